-- wrk script of the benchmark. With a file argument (`-- FILE [PATH]`), each request is a
-- POST to PATH (default /v1/authorize) of a random line of FILE (one JSON body per line)
-- with the bearer token from AUTHZ_TOKEN (none when it is empty: the Cerbos PDP); without
-- a file, a plain GET of the URL (the ping).
-- At the end it prints one line "WRK_JSON {...}" with the figures the benchmark reads.
local bodies = {}
local headers = {}
local path = "/v1/authorize"

function init(args)
  if args[1] then
    for line in io.lines(args[1]) do
      bodies[#bodies + 1] = line
    end
    headers["Content-Type"] = "application/json"
    local token = os.getenv("AUTHZ_TOKEN") or ""
    if token ~= "" then
      headers["Authorization"] = "Bearer " .. token
    end
    path = args[2] or path
  end
  math.randomseed(os.time() + (tonumber(tostring({}):sub(8)) or 0))
end

function request()
  if #bodies == 0 then
    return wrk.format("GET")
  end
  return wrk.format("POST", path, headers, bodies[math.random(#bodies)])
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "rps": %.1f, "p50_us": %d, "p90_us": %d, ' ..
    '"p99_us": %d, "max_us": %d, "errors_connect": %d, "errors_read": %d, "errors_write": %d, ' ..
    '"errors_status": %d, "errors_timeout": %d}\n',
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout))
end

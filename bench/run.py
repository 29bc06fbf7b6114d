"""The benchmark: the service beside its peers, on a realistic store, in one run.

    python -m bench.run                 # full size (make bench)
    python -m bench.run --scale 0.1     # a tenth (make bench-quick)

Measures, and writes to ``--out`` (bench-results.json) with a readable table on stdout:

* inproc_decision_us: p50 of ``Authorizer.check`` (facts query + enforcer + effects
  planning + decision log) on random requests over the store; policy_only_us:
  ``Policy.decide`` alone on the same requests' facts;
* cedarpy_decision_us: the same rules in Cedar (bench/cedar/) evaluated by cedarpy, policy
  set parsed once, only the entities a request needs; naive_casbin_us: stock pycasbin with
  one ACL line per share; policy_vs_cedarpy = policy_only_us / cedarpy_decision_us;
* wsgi_authorize_us, wsgi_ping_us, wsgi_authorize_vs_ping: the Flask app in process, and a
  profile of the authorize path's parts (bench/profile_request.py, a fresh process);
* over HTTP, with wrk (8 connections), in alternating rounds, all servers up side by side:
  http_rps, http_p50_ms, http_p99_ms, http_cpu_us_per_request of POST /v1/authorize under
  ``audience-authz serve`` (gunicorn), the same under granian (granian_*), GET /healthz of
  each (ping_*), the Cerbos PDP given the attributes (cerbos_*), both batch forms
  (batch_*, cerbos_batch_*), and the ratios http_rps_vs_cerbos, batch_vs_cerbos;
* scale_ratio_<size>_vs_1k: p50 decision on the main store over the same on a 1k store;
* stop_sharing_10k_s: stopping one audience applied in 10,000 recipient ad groups;
* inproc_decision_durable_us, durable_vs_batched: a full decision in process with its
  decision-log row committed before it returns (``AUDIENCE_AUTHZ_DECISION_LOG=durable``),
  and its p50 over the batched default's on the same requests (details.decision_log_modes).

It also cross-checks decisions: every measured request is decided by the service and by
Cedar (from entities read with the benchmark's own SQL), every check of Cerbos's HTTP runs
is compared with the service's decision, and any disagreement is reported and fails the
run (exit status 2); a sample is asked again of each HTTP server.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import platform
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
TOKEN = "bench-token"
SMALL_SCALE = 0.001  # 1k audiences: the store the main one is compared with
BATCH = 10  # checks per /v1/authorize/batch request in the batch run

TARGETS = {  # metric: (comparison, bound), from issues 4 and 12
    "policy_vs_cedarpy": ("<=", 0.5),
    "scale_ratio": ("<=", 1.2),
    "stop_sharing_10k_s": ("<=", 1.0),
    "inproc_decision_us": ("<=", 100.0),
    "http_rps_vs_cerbos": (">=", 1.5),
    "batch_vs_cerbos": (">=", 2.0),
    "wsgi_authorize_vs_ping": ("<=", 2.0),
}
MINIMUMS = {"http_rps_vs_cerbos": (">=", 1.0)}  # below the goal, the least that is acceptable


_STARTED = time.monotonic()


def log(message: str) -> None:
    click.echo(f"[{time.monotonic() - _STARTED:6.1f} s] {message}", err=True)


def percentiles(seconds: list[float]) -> dict:
    """p50/p90/p99/mean in microseconds."""
    ordered = sorted(seconds)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e6

    return {"p50": round(statistics.median(ordered) * 1e6, 2), "p90": round(at(0.90), 2),
            "p99": round(at(0.99), 2), "mean": round(statistics.fmean(ordered) * 1e6, 2), "n": len(ordered)}


def timed(fn, items) -> list[float]:
    clock = time.perf_counter
    out = []
    for item in items:
        started = clock()
        fn(item)
        out.append(clock() - started)
    return out


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# -- the machine ----------------------------------------------------------------------------

def machine() -> dict:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError):
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split(":", 1)[1].strip()
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in ("pycasbin", "cedarpy", "flask", "flask-openapi3", "pydantic", "peewee", "gunicorn", "granian"):
        with contextlib.suppress(PackageNotFoundError):
            versions[name] = version(name)
    versions["sqlite"] = sqlite3.sqlite_version
    from bench import cerbos

    versions["cerbos"] = cerbos.version()
    wrk = shutil.which("wrk")
    if wrk:
        out = subprocess.run([wrk, "--version"], capture_output=True, text=True)
        versions["wrk"] = (out.stdout or out.stderr).split("[")[0].strip()
    return {"cpus": os.cpu_count(), "cpu_model": model, "memory": mem, "python": platform.python_version(),
            "platform": platform.platform(), "versions": versions, "load_average_at_start": load_average()}


# -- stores ---------------------------------------------------------------------------------

def ensure_store(store_dir: Path, scale: float, rebuild: bool, progress: bool) -> tuple[Path, object]:
    from bench.build_store import STORE_FORMAT, Sizes, build, store_meta

    sizes = Sizes.scaled(scale)
    path = store_dir / f"store-{sizes.audiences}.db"
    meta = store_meta(path)
    wanted = {"format": STORE_FORMAT, "sizes": sizes.__dict__}
    if rebuild or meta is None or {k: meta.get(k) for k in wanted} != wanted:
        log(f"building store {path.name}: {sizes}")
        started = time.perf_counter()
        build(path, sizes, progress=progress)
        log(f"  built in {time.perf_counter() - started:.1f} s")
    else:
        log(f"reusing store {path} ({sizes.audiences:,} audiences)")
    # earlier runs' logs out, so a kept store does not grow run after run
    conn = sqlite3.connect(path)
    conn.execute("DELETE FROM decision_log")
    conn.execute("DELETE FROM event")
    conn.commit()
    conn.close()
    return path, sizes


def bind(path: Path):
    """Point the service's models at ``path``; returns a fresh Authorizer."""
    from audience_authz.engine.authorizer import Authorizer
    from audience_authz.engine.decision_log import writer
    from audience_authz.engine.policy import Policy
    from audience_authz.store import db

    if db.database.obj is not None:
        writer.flush()
        db.close()
    db.init(f"sqlite:///{path}")
    return Authorizer(Policy.load())


# -- in process -----------------------------------------------------------------------------

def decision_latency(authz, warm, measured) -> list[float]:
    """Seconds of each full decision (Authorizer.check, logged), after a warm-up."""
    from audience_authz.engine.decision_log import writer

    for req in warm:
        authz.check(req, log=False)
    out = timed(authz.check, measured)
    writer.flush()
    return out


def decision_log_modes(authz, requests) -> dict:
    """p50 of a full decision with its row batched (the default) and committed before the
    answer (``AUDIENCE_AUTHZ_DECISION_LOG=durable``), alternating so load hits both alike."""
    from audience_authz.engine.decision_log import writer

    runs = {"batched": [], "durable": []}
    half = max(1, len(requests) // 4)
    try:
        for chunk in (requests[:half], requests[half:2 * half]):
            for mode in runs:
                writer.durable = mode == "durable"
                runs[mode] += decision_latency(authz, chunk[:20], chunk)
    finally:
        writer.durable = False
    return {mode: percentiles(seconds) for mode, seconds in runs.items()}


def scale_rounds(stores: list[tuple[str, Path, object]], n: int, rounds: int) -> dict:
    """Alternate the stores, ``rounds`` times, so that load from elsewhere on the machine
    falls on both; each round's p50, and the median of them per store."""
    from audience_authz.engine.facts import gather
    from bench import workload

    per_store = {label: [] for label, _, _ in stores}
    facts_query = {label: [] for label, _, _ in stores}
    samples = {}
    requests = {label: (workload.draw(path, sizes, n, seed=3), workload.draw(path, sizes, n, seed=5))
                for label, path, sizes in stores}
    for _ in range(rounds):
        for label, path, _sizes in stores:
            authz = bind(path)
            warm, measured = requests[label]
            seconds = decision_latency(authz, warm, measured)
            per_store[label].append(percentiles(seconds)["p50"])
            samples[label] = samples.get(label, []) + seconds
            facts_query[label].append(percentiles(timed(lambda r, authz=authz: gather(authz.policy, r), measured))["p50"])
    return {label: {"p50_rounds": values, "p50": round(statistics.median(values), 2),
                    "all": percentiles(samples[label]),
                    "facts_query_p50": round(statistics.median(facts_query[label]), 2)}
            for label, values in per_store.items()}


def policy_only(authz, requests) -> tuple[dict, list]:
    from audience_authz.engine.facts import gather

    policy = authz.policy
    gathered = [(req, gather(policy, req)) for req in requests]
    seconds = timed(lambda pair: policy.decide(pair[1].relation, pair[0].action, pair[1].facts), gathered)
    return percentiles(seconds), gathered


def cedar_side(store: Path, authz, requests, policy_file: Path | None) -> dict:
    """cedarpy on the same requests, and the cross-check of every decision."""
    from bench.cedar import Cedar

    cedar = Cedar(store, policy_file)
    prepared = [cedar.prepare(req) for req in requests]
    parsed = percentiles(timed(cedar.decide, prepared))
    text = percentiles(timed(lambda p: cedar.decide(p, cedar.text), prepared[:500]))
    mismatches, reason_mismatches, examples = 0, 0, []
    allowed = 0
    for req, prep in zip(requests, prepared):
        outcome = authz.check(req, log=False, plan_effects=False)
        result = cedar.decide(prep)
        codes = cedar.reason_codes(result)
        allowed += outcome.allowed
        if result.allowed != outcome.allowed:
            mismatches += 1
        elif not outcome.allowed and outcome.decision.reason not in codes:
            reason_mismatches += 1
        else:
            continue
        if len(examples) < 5:
            examples.append({"request": req.__dict__, "service": [outcome.decision.decision, outcome.decision.reason],
                             "cedar": [result.decision.value, sorted(codes)],
                             "cedar_errors": result.diagnostics.errors[:2]})
    cedar.close()
    return {"parsed_policy_set": parsed, "policy_text_each_call": text,
            "cross_check": {"requests": len(requests), "allowed": allowed, "mismatches": mismatches,
                            "reason_mismatches": reason_mismatches, "examples": examples}}


def naive_casbin(store: Path, lines: int, requests, max_requests: int, max_seconds: float) -> dict:
    """Stock pycasbin (casbin.Enforcer, file adapter), one ACL line per active share."""
    import random

    import casbin

    conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    rows = conn.execute("SELECT recipient_account_id, audience_id FROM audience_share WHERE status = 'active'"
                        " ORDER BY id LIMIT ?", [lines]).fetchall()
    conn.close()
    with tempfile.TemporaryDirectory() as tmp:
        policy_csv = Path(tmp) / "policy.csv"
        with policy_csv.open("w", newline="") as handle:
            writer = csv.writer(handle)
            for recipient, audience in rows:
                writer.writerow(["p", recipient, audience, "^(view|apply|delete)$"])
        started = time.perf_counter()
        enforcer = casbin.Enforcer(str(BENCH / "naive_casbin" / "model.conf"), str(policy_csv))
        load_s = time.perf_counter() - started
    rng = random.Random(13)
    asks = []
    for i, req in enumerate(requests[:max_requests]):  # half hits (a random line), half as drawn
        if i % 2 == 0 and rows:
            recipient, audience = rng.choice(rows)
            asks.append((recipient, audience, "view"))
        else:
            asks.append((req.principal, req.audience_id, req.action))
    seconds, deadline = [], time.perf_counter() + max_seconds
    for ask in asks:
        started = time.perf_counter()
        enforcer.enforce(*ask)
        seconds.append(time.perf_counter() - started)
        if time.perf_counter() > deadline and len(seconds) >= 5:
            break
    return {"lines": len(rows), "load_s": round(load_s, 3), **percentiles(seconds)}


def stop_sharing_runs(store: Path, groups: int, runs: int) -> dict:
    from bench import stop_sharing

    recipients = 100 if groups >= 1000 else max(1, groups // 10)
    per_recipient = max(1, groups // recipients)
    authz = bind(store)
    results = []
    for _ in range(runs):
        fixture = stop_sharing.create_fixture(uuid.uuid4().hex[:8], recipients, per_recipient)
        results.append(stop_sharing.measure(authz, fixture))
    seconds = [r["seconds"] for r in results]
    return {"ad_groups": recipients * per_recipient, "recipients": recipients, "runs_s": [round(s, 3) for s in seconds],
            "median_s": round(statistics.median(seconds), 3), "last": results[-1],
            "complete": all(r["complete"] for r in results)}


def wsgi_side(store: Path, n: int) -> dict:
    """The Flask app called in process (no sockets, no HTTP server): what the framework part
    of a request costs, POST /v1/authorize against GET /healthz, and where an authorize's
    time goes (cProfile); in a fresh process (bench/profile_request.py)."""
    out = subprocess.run([sys.executable, "-m", "bench.profile_request", "--store", str(store), "--requests",
                          str(n), "--json"], cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    if out.returncode != 0:
        raise RuntimeError(f"bench.profile_request failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- over HTTP ------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SERVERS = ("gunicorn", "granian")  # the first is what `audience-authz serve` runs


@contextlib.contextmanager
def server(store: Path, workers: int, threads: int, log_path: Path, kind: str = "gunicorn"):
    """The service over HTTP: ``audience-authz serve`` (gunicorn), or the same app, set up
    the same way (bench/granian_app.py), under granian's WSGI interface."""
    port = free_port()
    env = {**os.environ, "AUDIENCE_AUTHZ_TOKENS": TOKEN, "PYTHONPATH": str(ROOT)}
    metrics_dir = None
    if kind == "gunicorn":
        args = [sys.executable, "-m", "audience_authz", "serve", "--host", "127.0.0.1", "--port", str(port),
                "--database", f"sqlite:///{store}", "--workers", str(workers), "--threads", str(threads)]
    else:
        metrics_dir = tempfile.mkdtemp(prefix="bench-granian-metrics-")
        env.update({"AUDIENCE_AUTHZ_DATABASE": f"sqlite:///{store}", "PROMETHEUS_MULTIPROC_DIR": metrics_dir})
        args = [sys.executable, "-m", "granian", "--interface", "wsgi", "--host", "127.0.0.1", "--port", str(port),
                "--workers", str(workers), "--blocking-threads", str(threads), "--no-ws", "--no-log",
                "bench.granian_app:app"]
    with log_path.open("w") as out:
        process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited: {log_path.read_text()[-2000:]}")
            with contextlib.suppress(OSError), urllib.request.urlopen(base + "/healthz", timeout=1) as response:
                if response.status == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.2)
        yield base, process.pid
    finally:
        process.send_signal(signal.SIGTERM)  # graceful: workers flush their decision log
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def server_cpu_seconds(pid: int) -> float | None:
    """User + system CPU of the server process and its workers (Linux /proc), or None."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    try:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if entry.name == str(pid) or fields[1] == str(pid):  # fields[1] is the parent pid
                    total += int(fields[11]) + int(fields[12])  # utime, stime
    except OSError:
        return None
    return total / tick


def wrk(url: str, seconds: float, body_file: Path | None, server_pid: int, path: str | None = None,
        token: str = TOKEN) -> dict:
    args = ["wrk", "-t2", "-c8", f"-d{max(1, round(seconds))}s", "-s", str(BENCH / "wrk" / "authz.lua"), url]
    if body_file is not None:
        args += ["--", str(body_file), *([path] if path else [])]
    env = {**os.environ, "AUTHZ_TOKEN": token}
    cpu_before = server_cpu_seconds(server_pid)
    out = subprocess.run(args, capture_output=True, text=True, env=env, timeout=seconds + 60)
    cpu_after = server_cpu_seconds(server_pid)
    for line in out.stdout.splitlines():
        if line.startswith("WRK_JSON "):
            result = json.loads(line[len("WRK_JSON "):])
            if cpu_before is not None and cpu_after is not None and result["requests"]:
                result["server_cpu_us_per_request"] = round((cpu_after - cpu_before) / result["requests"] * 1e6, 1)
            return result
    raise RuntimeError(f"wrk gave no result: {out.stdout[-1000:]} {out.stderr[-1000:]}")


def post(base: str, body: dict) -> dict:
    request = urllib.request.Request(base + "/v1/authorize", data=json.dumps(body).encode(), method="POST",
                                     headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _jsonl(path: Path, bodies) -> Path:
    path.write_text("".join(json.dumps(b, separators=(",", ":")) + "\n" for b in bodies))
    return path


def cerbos_cross_check(port: int, bodies: list[dict], expected: list[list[str]]) -> dict:
    """Every body asked of Cerbos, its answers against the service's (in process)."""
    from bench import cerbos

    client = cerbos.Client(port)
    checks = mismatches = 0
    examples = []
    try:
        for body, wanted in zip(bodies, expected):
            answers = client.ask(body)
            for i, (got, want) in enumerate(zip(answers, wanted)):
                checks += 1
                if got != want:
                    mismatches += 1
                    if len(examples) < 5:
                        examples.append({"principal": body["principal"], "resource": body["resources"][i],
                                         "cerbos": got, "service": want})
    finally:
        client.close()
    return {"checks": checks, "mismatches": mismatches, "examples": examples}


def http_side(store: Path, sizes, authz_factory, workers: int, threads: int, seconds: float,
              rounds: int, tmp: Path, servers=SERVERS, with_cerbos: bool = True) -> dict:
    """The service over HTTP under each server of ``servers`` and the Cerbos PDP, with the
    same wrk settings, in alternating rounds: single checks, the batch forms, and the ping."""
    from bench import cerbos, workload

    if shutil.which("wrk") is None:
        raise click.ClickException("wrk is not installed (make bench installs it: apt-get install wrk)")
    if with_cerbos and not cerbos.BINARY.exists():
        raise click.ClickException("Cerbos is not installed (make bench-install installs it)")
    requests = workload.draw(store, sizes, 5000, seed=11)
    batches = workload.draw_batches(store, sizes, 500, BATCH, seed=17)  # one account each
    bodies = _jsonl(tmp / "bodies.jsonl", (workload.as_body(r) for r in requests))
    batch_bodies = _jsonl(tmp / "batches.jsonl", ({"checks": [workload.as_body(r) for r in b]} for b in batches))
    authz = authz_factory()

    def decided(req) -> str:
        return authz.check(req, log=False, plan_effects=False).decision.decision

    expected = [decided(r) for r in requests]
    expected_batches = [[decided(r) for r in b] for b in batches]
    sample = requests[:200]
    before = _count(store, "decision_log")
    runs: dict[str, list] = {}

    def run(name, *args, **kwargs):
        runs.setdefault(name, []).append(wrk(*args, **kwargs))

    primary = servers[0]
    http_checks = {}
    with contextlib.ExitStack() as stack:
        bases = {kind: stack.enter_context(server(store, workers, threads, tmp / f"{kind}.log", kind))
                 for kind in servers}
        pdp = None
        if with_cerbos:
            attrs = cerbos.Attributes(store)
            cerbos_bodies = [attrs.check(r) for r in requests]
            cerbos_batch_bodies = [attrs.batch(b) for b in batches]
            attrs.close()
            cerbos_file = _jsonl(tmp / "cerbos.jsonl", cerbos_bodies)
            cerbos_batch_file = _jsonl(tmp / "cerbos-batches.jsonl", cerbos_batch_bodies)
            base, port, pid = stack.enter_context(cerbos.server(tmp / "cerbos.log"))
            pdp = (base, pid)
            cross = {"single": cerbos_cross_check(port, cerbos_bodies, [[e] for e in expected]),
                     "batch": cerbos_cross_check(port, cerbos_batch_bodies, expected_batches)}
        for base, pid in bases.values():  # warm-up: caches, connections
            wrk(base + "/v1/authorize", min(2, seconds), bodies, pid)
        if pdp:
            wrk(pdp[0] + cerbos.CHECK_PATH, min(2, seconds), cerbos_file, pdp[1], cerbos.CHECK_PATH, token="")
        for _ in range(rounds):  # alternate, so load from elsewhere falls on each
            for kind, (base, pid) in bases.items():
                run(f"{kind}_authorize", base + "/v1/authorize", seconds, bodies, pid)
                if pdp and kind == primary:
                    run("cerbos", pdp[0] + cerbos.CHECK_PATH, seconds, cerbos_file, pdp[1], cerbos.CHECK_PATH,
                        token="")
                run(f"{kind}_ping", base + "/healthz", seconds, None, pid)
            base, pid = bases[primary]
            run("batch", base + "/v1/authorize/batch", seconds, batch_bodies, pid, "/v1/authorize/batch")
            if pdp:
                run("cerbos_batch", pdp[0] + cerbos.CHECK_PATH, seconds, cerbos_batch_file, pdp[1],
                    cerbos.CHECK_PATH, token="")
        for kind, (base, _pid) in bases.items():
            answers = [post(base, workload.as_body(r))["decision"] for r in sample]
            http_checks[kind] = {"requests": len(sample),
                                 "mismatches": sum(a != e for a, e in zip(answers, expected))}
    logged = _count(store, "decision_log") - before
    server_errors = {kind: _error_lines(tmp / f"{kind}.log") for kind in servers}
    asked = (sum(r["requests"] for k in servers for r in runs[f"{k}_authorize"]) + len(sample) * len(servers)
             + sum(r["requests"] for r in runs["batch"]) * BATCH)
    def errors_of(names):
        return sum(r[k] for name in names for r in runs.get(name, []) for k in r if k.startswith("errors_"))

    # errors of serve's server or of Cerbos fail the run; the other servers' are reported
    compared = {f"{kind}_{what}" for kind in servers[1:] for what in ("authorize", "ping")}
    errors = errors_of(set(runs) - compared)
    compared_errors = {kind: errors_of({f"{kind}_authorize", f"{kind}_ping"}) for kind in servers[1:]}

    def median_of(name, key, scale=1.0, digits=1):
        values = [r[key] for r in runs.get(name, []) if key in r]
        return round(statistics.median(values) * scale, digits) if values else None

    out = {"servers": list(servers), "workers": workers, "threads": threads, "connections": 8,
           "seconds_per_run": seconds, "rounds": rounds, "batch_size": BATCH, "runs": runs, "wrk_errors": errors,
           "compared_server_wrk_errors": compared_errors, "server_errors": server_errors}
    for kind in servers:
        out[kind] = {
            "http_rps": median_of(f"{kind}_authorize", "rps"),
            "http_p50_ms": median_of(f"{kind}_authorize", "p50_us", 1e-3, 3),
            "http_p99_ms": median_of(f"{kind}_authorize", "p99_us", 1e-3, 3),
            "http_cpu_us_per_request": median_of(f"{kind}_authorize", "server_cpu_us_per_request"),
            "ping_rps": median_of(f"{kind}_ping", "rps"),
            "ping_p50_ms": median_of(f"{kind}_ping", "p50_us", 1e-3, 3),
            "ping_cpu_us_per_request": median_of(f"{kind}_ping", "server_cpu_us_per_request"),
            "wrk_errors": errors_of({f"{kind}_authorize", f"{kind}_ping"}),
        }
    figures = {k: v for k, v in out[primary].items() if k != "wrk_errors"}
    figures["http_rps_vs_ping"] = round(figures["http_rps"] / figures["ping_rps"], 3)
    figures["batch_decisions_per_s"] = median_of("batch", "rps", BATCH)
    figures["batch_cpu_us_per_decision"] = median_of("batch", "server_cpu_us_per_request", 1 / BATCH)
    for kind in servers[1:]:
        figures.update({f"{kind}_{k}": v for k, v in out[kind].items() if k != "wrk_errors"})
    if pdp:
        figures.update({
            "cerbos_rps": median_of("cerbos", "rps"),
            "cerbos_p50_ms": median_of("cerbos", "p50_us", 1e-3, 3),
            "cerbos_p99_ms": median_of("cerbos", "p99_us", 1e-3, 3),
            "cerbos_cpu_us_per_request": median_of("cerbos", "server_cpu_us_per_request"),
            "cerbos_batch_decisions_per_s": median_of("cerbos_batch", "rps", BATCH),
            "cerbos_batch_cpu_us_per_decision": median_of("cerbos_batch", "server_cpu_us_per_request", 1 / BATCH),
        })
        figures["http_rps_vs_cerbos"] = round(figures["http_rps"] / figures["cerbos_rps"], 3)
        figures["batch_vs_cerbos"] = round(figures["batch_decisions_per_s"] / figures["cerbos_batch_decisions_per_s"], 3)
        out["cerbos"] = {"version": cerbos.version(), "cross_check": cross}
    out["figures"] = figures
    out["cross_check"] = {"requests": sum(c["requests"] for c in http_checks.values()),
                          "mismatches": sum(c["mismatches"] for c in http_checks.values()), "by_server": http_checks}
    out["decision_log"] = {"requests_answered_at_least": asked, "rows_written": logged, "complete": logged >= asked}
    return out


def _error_lines(log_path: Path, keep: int = 5) -> dict:
    """The server's log lines of answers >= 400 and of errors: how many, the first few."""
    count, first = 0, []
    with contextlib.suppress(OSError):
        for line in log_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if not isinstance(record, dict):
                    continue
                if (record.get("status") or 0) >= 400 or record.get("level") in ("ERROR", "CRITICAL"):
                    count += 1
                    if len(first) < keep:
                        first.append({k: record.get(k) for k in ("level", "message", "status", "path", "exc_info")
                                      if record.get(k) is not None})
    return {"lines": count, "first": first}


def _median_or_none(runs: list[dict], key: str):
    values = [run[key] for run in runs if key in run]
    return round(statistics.median(values), 1) if values else None


def _count(store: Path, table: str) -> int:
    conn = sqlite3.connect(store)
    try:
        return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    finally:
        conn.close()


# -- report ---------------------------------------------------------------------------------

def verdicts(figures: dict, scale_key: str) -> dict:
    out = {}
    for name, (op, bound) in TARGETS.items():
        key = scale_key if name == "scale_ratio" else name
        value = figures.get(key)
        if value is None or (name == "stop_sharing_10k_s" and figures.get("stop_sharing_ad_groups") != 10_000):
            continue
        met = value <= bound if op == "<=" else value >= bound
        out[key] = {"value": value, "target": f"{op} {bound:g}", "met": met}
        if name in MINIMUMS:
            op, bound = MINIMUMS[name]
            out[key].update(minimum=f"{op} {bound:g}", minimum_met=value <= bound if op == "<=" else value >= bound)
    return out


def figure_rows(results: dict) -> list[tuple[str, str, str]]:
    """(figure, unit, what it is) of every figure, in the order they are shown."""
    f = results["figures"]
    return [
        ("inproc_decision_us", "µs", "full decision in process, p50"),
        ("inproc_decision_durable_us", "µs", "the same with AUDIENCE_AUTHZ_DECISION_LOG=durable (row committed first), p50"),
        ("durable_vs_batched", "", "inproc_decision_durable / inproc_decision (batched, the default)"),
        ("policy_only_us", "µs", "Policy.decide alone, p50"),
        ("facts_query_us", "µs", "the facts statement alone (facts.gather), p50"),
        ("facts_query_1k_us", "µs", "the same on the 1k store"),
        ("cedarpy_decision_us", "µs", "cedarpy, same rules and requests, p50"),
        ("cedarpy_policy_text_us", "µs", "cedarpy with the policy text parsed on each call, p50"),
        ("policy_vs_cedarpy", "", "policy_only / cedarpy"),
        ("naive_casbin_us", "µs", f"stock pycasbin, {f.get('naive_casbin_lines', 0):,} ACL lines, p50"),
        ("wsgi_authorize_us", "µs", "POST /v1/authorize through the Flask app in process, p50"),
        ("wsgi_ping_us", "µs", "GET /healthz the same way, p50"),
        ("wsgi_authorize_vs_ping", "", "wsgi_authorize / wsgi_ping"),
        ("wsgi_list_ms", "ms", "GET /v1/accounts/{id}/audiences, a page of 100, in process, p50"),
        ("wsgi_list_apply_ms", "ms", "the same with ?action=apply (which audiences may it apply), p50"),
        ("http_rps", "req/s", f"POST /v1/authorize under serve ({SERVERS[0]}), 8 connections"),
        ("http_p50_ms", "ms", "latency p50"),
        ("http_p99_ms", "ms", "latency p99"),
        ("http_cpu_us_per_request", "µs", "server CPU per authorize (all processes)"),
        ("cerbos_rps", "req/s", "Cerbos PDP, one check per request, attributes sent, 8 connections"),
        ("cerbos_p50_ms", "ms", "latency p50"),
        ("cerbos_p99_ms", "ms", "latency p99"),
        ("cerbos_cpu_us_per_request", "µs", "Cerbos CPU per check"),
        ("http_rps_vs_cerbos", "", "http_rps / cerbos_rps"),
        ("batch_decisions_per_s", "/s", f"decisions via /v1/authorize/batch, {BATCH} per request"),
        ("batch_cpu_us_per_decision", "µs", "server CPU per decision in the batch"),
        ("cerbos_batch_decisions_per_s", "/s", f"Cerbos /api/check/resources, {BATCH} resources per request"),
        ("cerbos_batch_cpu_us_per_decision", "µs", "Cerbos CPU per decision in the batch"),
        ("batch_vs_cerbos", "", "batch / cerbos_batch decisions per second"),
        ("ping_rps", "req/s", "GET /healthz, same server"),
        ("http_rps_vs_ping", "", "authorize / ping"),
        ("ping_cpu_us_per_request", "µs", "server CPU per ping"),
        *[(f"{kind}_{key}", unit, f"{what} under {kind}") for kind in SERVERS[1:] for key, unit, what in (
            ("http_rps", "req/s", "POST /v1/authorize"), ("http_p50_ms", "ms", "latency p50"),
            ("http_p99_ms", "ms", "latency p99"), ("http_cpu_us_per_request", "µs", "server CPU per authorize"),
            ("ping_rps", "req/s", "GET /healthz"), ("ping_cpu_us_per_request", "µs", "server CPU per ping"))],
        (results["scale_key"], "", "p50 decision, main store / 1k store"),
        ("stop_sharing_10k_s", "s", f"stop sharing, {f.get('stop_sharing_ad_groups', 0):,} ad groups"),
    ]


def shown(value) -> str:
    return f"{value:,.3f}" if isinstance(value, float) and value < 10 else f"{value:,.1f}"


def table(results: dict) -> str:
    f, t = results["figures"], results["targets"]
    rows = figure_rows(results)
    lines = [f"{'metric':<34} {'value':>12}  {'target':<9} {'met':<4} what", "-" * 100]
    for key, unit, what in rows:
        if key not in f:
            continue
        verdict = t.get(key)
        lines.append(f"{key:<34} {shown(f[key]) + (' ' + unit if unit else ''):>12}  "
                     f"{verdict['target'] if verdict else '':<9} "
                     f"{('yes' if verdict['met'] else 'NO') if verdict else '':<4} {what}")
    checks = results["cross_check"]
    lines.append("-" * 100)
    lines.append(f"cross-check vs Cedar: {checks['cedar']['requests']:,} requests, "
                 f"{checks['cedar']['mismatches']} decision mismatches, "
                 f"{checks['cedar']['reason_mismatches']} reason mismatches"
                 + (f"; over HTTP: {checks['http']['requests']} requests, {checks['http']['mismatches']} mismatches"
                    if checks.get("http") else ""))
    if checks.get("cerbos"):
        c = checks["cerbos"]
        lines.append(f"cross-check vs Cerbos: {c['single']['checks'] + c['batch']['checks']:,} checks (every one "
                     f"of the HTTP runs), {c['single']['mismatches'] + c['batch']['mismatches']} decision mismatches")
    return "\n".join(lines)


# -- the command ----------------------------------------------------------------------------

@click.command()
@click.option("--scale", default=1.0, show_default=True, help="store size: 1 = 1M audiences, 0.1 = 100k")
@click.option("--out", default="bench-results.json", show_default=True, type=click.Path(dir_okay=False))
@click.option("--store-dir", default=str(BENCH / ".stores"), show_default=True, type=click.Path(file_okay=False))
@click.option("--rebuild", is_flag=True, help="build the stores even when a matching one is kept")
@click.option("--requests", "n_requests", default=None, type=int, help="measured requests per store (and as many warm-up)")
@click.option("--rounds", default=None, type=int, help="alternating rounds (scale ratio, HTTP); 3, or 2 below scale 1")
@click.option("--http/--no-http", "with_http", default=True, show_default=True)
@click.option("--http-seconds", default=None, type=float, help="seconds of each wrk run")
@click.option("--workers", default=None, type=int, help="gunicorn workers (default: CPU count)")
@click.option("--threads", default=8, show_default=True, help="gunicorn threads per worker (serve's default)")
@click.option("--stop-groups", default=10_000, show_default=True, help="recipient ad groups of the stop-sharing run")
@click.option("--naive-lines", default=None, type=int, help="ACL lines of the naive Casbin peer (default 100k x scale)")
@click.option("--cedar-policy", default=None, type=click.Path(exists=True, dir_okay=False),
              help="another Cedar policy file (to see the cross-check catch a wrong translation)")
@click.option("--cerbos/--no-cerbos", "with_cerbos", default=True, show_default=True,
              help="the Cerbos PDP beside the service over HTTP")
@click.option("--servers", default=",".join(SERVERS), show_default=True,
              help="HTTP servers of the service to measure (the first is serve's)")
@click.option("--progress/--no-progress", default=True, show_default=True)
def main(scale, out, store_dir, rebuild, n_requests, rounds, with_http, http_seconds, workers, threads,
         stop_groups, naive_lines, cedar_policy, with_cerbos, servers, progress):
    """Run the benchmark and write OUT (JSON) plus a table on stdout."""
    started = time.time()
    store_dir = Path(store_dir)
    store_dir.mkdir(parents=True, exist_ok=True)
    n_requests = n_requests or (5000 if scale >= 1 else 2000)
    http_seconds = http_seconds or (8.0 if scale >= 1 else 3.0)
    rounds = rounds or (3 if scale >= 1 else 2)
    servers = tuple(s.strip() for s in servers.split(",") if s.strip())
    if not servers or set(servers) - set(SERVERS):
        raise click.BadParameter(f"one or more of {', '.join(SERVERS)}", param_hint="--servers")
    workers = workers or os.cpu_count() or 1
    naive_lines = naive_lines or max(10, int(100_000 * scale))
    results = {"started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "scale": scale, "machine": machine()}

    from bench import workload

    main_store, sizes = ensure_store(store_dir, scale, rebuild, progress)
    small_store, small_sizes = ensure_store(store_dir, SMALL_SCALE, rebuild, progress)
    results["store"] = {"path": str(main_store), "sizes": sizes.__dict__, "bytes": main_store.stat().st_size}
    label = f"{sizes.audiences // 1_000_000}m" if sizes.audiences >= 1_000_000 else f"{sizes.audiences // 1000}k"
    scale_key = f"scale_ratio_{label}_vs_1k"
    results["scale_key"] = scale_key
    loads = {}

    log(f"in process: {n_requests:,} random requests per store, {rounds} alternating rounds")
    loads["in_process"] = load_average()
    scale = scale_rounds([("1k", small_store, small_sizes), ("main", main_store, sizes)], n_requests, rounds)
    authz = bind(main_store)
    measured = workload.draw(main_store, sizes, n_requests, seed=5)
    policy, _ = policy_only(authz, measured)
    log("the decision log: batched against durable, in process")
    log_modes = decision_log_modes(authz, measured)

    log("cedarpy, and the cross-check of every request")
    loads["cedar"] = load_average()
    cedar = cedar_side(main_store, authz, measured, Path(cedar_policy) if cedar_policy else None)

    log(f"naive pycasbin with {naive_lines:,} ACL lines")
    loads["naive_casbin"] = load_average()
    naive = naive_casbin(main_store, naive_lines, measured, max_requests=30, max_seconds=20)

    log(f"stop sharing with {stop_groups:,} recipient ad groups")
    loads["stop_sharing"] = load_average()
    stop = stop_sharing_runs(main_store, stop_groups, runs=3)

    log("the Flask app in process (WSGI, no HTTP server)")
    wsgi = wsgi_side(main_store, n_requests)

    http = None
    if with_http:
        log(f"HTTP: {' and '.join(servers)}, {workers} worker(s) x {threads} thread(s)"
            f"{', the Cerbos PDP' if with_cerbos else ''}, wrk 8 connections, {rounds} x {http_seconds:g} s per run")
        loads["http"] = load_average()
        from audience_authz.engine.decision_log import writer
        from audience_authz.store import db
        writer.flush()
        db.close()
        with tempfile.TemporaryDirectory() as tmp:
            http = http_side(main_store, sizes, lambda: bind(main_store), workers, threads, http_seconds,
                             rounds, Path(tmp), servers, with_cerbos)
    loads["end"] = load_average()

    figures = {
        "inproc_decision_us": scale["main"]["p50"],
        "policy_only_us": policy["p50"],
        "facts_query_us": scale["main"]["facts_query_p50"],
        "facts_query_1k_us": scale["1k"]["facts_query_p50"],
        "cedarpy_decision_us": cedar["parsed_policy_set"]["p50"],
        "cedarpy_policy_text_us": cedar["policy_text_each_call"]["p50"],
        "policy_vs_cedarpy": round(policy["p50"] / cedar["parsed_policy_set"]["p50"], 3),
        "naive_casbin_us": naive["p50"],
        "naive_casbin_lines": naive["lines"],
        scale_key: round(scale["main"]["p50"] / scale["1k"]["p50"], 3),
        "wsgi_authorize_us": wsgi["authorize"]["p50"],
        "wsgi_ping_us": wsgi["ping"]["p50"],
        "wsgi_list_ms": round(wsgi["list"]["p50"] / 1000, 2) if "list" in wsgi else None,
        "wsgi_list_apply_ms": round(wsgi["list_apply"]["p50"] / 1000, 2) if "list_apply" in wsgi else None,
        "wsgi_authorize_vs_ping": round(wsgi["authorize"]["p50"] / wsgi["ping"]["p50"], 3),
        "stop_sharing_10k_s": stop["median_s"],
        "inproc_decision_durable_us": log_modes["durable"]["p50"],
        "durable_vs_batched": round(log_modes["durable"]["p50"] / log_modes["batched"]["p50"], 3),
        "stop_sharing_ad_groups": stop["ad_groups"],
    }
    if http:
        figures.update(http["figures"])
    results.update({
        "figures": figures,
        "targets": verdicts(figures, scale_key),
        "details": {"decision_by_store": scale, "policy_only": policy, "cedarpy": {
            k: v for k, v in cedar.items() if k != "cross_check"}, "naive_casbin": naive,
            "stop_sharing": stop, "wsgi": wsgi, "http": http, "decision_log_modes": log_modes},
        "cross_check": {"cedar": cedar["cross_check"], "http": http["cross_check"] if http else None,
                        "cerbos": http["cerbos"]["cross_check"] if http and "cerbos" in http else None},
        "load_average": loads,
        "seconds": round(time.time() - started, 1),
    })
    Path(out).write_text(json.dumps(results, indent=2) + "\n")
    click.echo(table(results))
    click.echo(f"\nmachine: {results['machine']['cpus']} CPUs ({results['machine']['cpu_model']}), "
               f"load average during the run: {', '.join(f'{k} {v[0]}' for k, v in loads.items())}")
    click.echo(f"written to {out} in {results['seconds']} s")
    cerbos_mismatches = sum(c["mismatches"] for c in (results["cross_check"]["cerbos"] or {}).values())
    if http and (http["wrk_errors"] or any(http["compared_server_wrk_errors"].values())):
        click.echo(f"wrk counted {http['wrk_errors']} errors of serve and Cerbos, "
                   f"{http['compared_server_wrk_errors']} of the other servers; the servers logged: "
                   f"{json.dumps(http['server_errors'])[:2000]}", err=True)
    if cedar["cross_check"]["mismatches"] or cerbos_mismatches or (
            http and (http["cross_check"]["mismatches"] or http["wrk_errors"])):
        raise SystemExit(2)


if __name__ == "__main__":
    main()

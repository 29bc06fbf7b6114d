"""Nothing a caller sends stops, slows or crashes the decisions (docs/operations.md,
"Capacity"): against a live server of one worker with 8 threads (as `make run` starts it),
on both databases.

Hundreds of idle event streams and waiting long polls take threads of the feed pool, never
the decision threads, and policy analyses run in processes of their own: with all of them
at once (and symbolic diffs and an oversized candidate asked back to back), a steady
authorize load keeps answering with no error and a p99 within 3x of the same load without
them, the probes answer within 100 ms, and no worker dies. Subscribers
that go away give their places back within seconds, and the bounds refuse the next ones
with a clear answer.

Sizes: AUDIENCE_AUTHZ_STRESS_LOAD_SECONDS (each window of load; `make stress` raises it).
"""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.support import Api, world_factory
from tests.support.ops import json_lines
from tests.support.reliability import DATABASES, private_server, size, worker_pids
from tests.support.stress_results import record

pytestmark = pytest.mark.full  # server processes: the full tier

TOKENS = [f"iso-token-{i}" for i in range(3)]
STREAMS, LONG_POLLS = 200, 100


def _open(port: int, token: str, target: str) -> socket.socket:
    """A subscriber that sends its request and then reads nothing: it only holds its place."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
    return sock


def _subscribers(api: Api) -> dict:
    return api.ok(api.get("/readyz"))["subscribers"]


def _wait_for(predicate, seconds: float) -> float:
    """Seconds until ``predicate()`` holds (fails past ``seconds``)."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < seconds, "not within the time allowed"
        time.sleep(0.1)
    return time.monotonic() - started


def _steady_load(base_url: str, token: str, body: dict, seconds: float, threads: int = 2) -> tuple[list, int]:
    """Authorize requests back to back from ``threads`` clients: (latencies, errors)."""
    latencies, errors, lock = [], [0], threading.Lock()
    until = time.monotonic() + seconds

    def client():
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        while time.monotonic() < until:
            started = time.perf_counter()
            try:
                ok = session.post(base_url + "/v1/authorize", json=body, timeout=10).status_code == 200
            except requests.RequestException:
                ok = False
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                errors[0] += not ok

    workers = [threading.Thread(target=client) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return latencies, errors[0]


# what a policy analysis may answer: done, refused (too costly, or a candidate that fails
# check), or busy (Retry-After); never a server error
ANALYSIS_ANSWERS = {"200", "422 analysis_too_costly", "422 policy_refused", "429 analysis_busy"}


def _oversized_candidate() -> str:
    """A policy.csv whose one condition is a 1,000-way ``or`` (about 40 KB)."""
    condition = " or ".join(f'r.f.audience_source == "s{i}"' for i in range(1000))
    return f"p, owner, view, {condition}, deny, audience_not_shareable,\n"


class _Analyses:
    """Three clients asking for symbolic diffs back to back, and one for an oversized
    candidate, until stopped: the answers counted as ``"<status> <code>"``."""

    def __init__(self, base_url: str, token: str, model: str):
        self.base_url, self.token = base_url, token
        self.answers: dict[str, int] = {}
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        bodies = [{"files": {"model.conf": model}, "symbolic": True}] * 3
        bodies.append({"files": {"policy.csv": _oversized_candidate()}, "symbolic": True})
        self.threads = [threading.Thread(target=self._ask, args=(b,)) for b in bodies]

    def _ask(self, body: dict) -> None:
        while not self.stopped.is_set():
            try:
                r = requests.post(self.base_url + "/v1/policy/diff", json=body, timeout=120,
                                  headers={"Authorization": f"Bearer {self.token}"})
                key = "200" if r.status_code == 200 else f"{r.status_code} {r.json()['error']['code']}"
            except (requests.RequestException, ValueError, KeyError) as exc:
                key = f"error {type(exc).__name__}"
            with self.lock:
                self.answers[key] = self.answers.get(key, 0) + 1
            if not key.startswith("200"):  # refused: ask again a second later, as a client would
                self.stopped.wait(1.0)

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def stop(self) -> dict[str, int]:
        self.stopped.set()
        for t in self.threads:
            t.join(150)
        return self.answers


def _rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])


def _cpu_ms_per_s(pid: int, seconds: float) -> float:
    """CPU time the process spends per second of wall time, over ``seconds``."""
    def cpu() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    before = cpu()
    time.sleep(seconds)
    return (cpu() - before) * 1000 / seconds


def _p99(latencies: list) -> float:
    return statistics.quantiles(latencies, n=100)[98]


def _probe_times(base_url: str, rounds: int = 20) -> list[float]:
    times = []
    for i in range(rounds):
        path = "/healthz" if i % 2 else "/readyz"
        started = time.perf_counter()
        assert requests.get(base_url + path, timeout=5).status_code == 200
        times.append(time.perf_counter() - started)
        time.sleep(0.05)
    return times


@pytest.mark.parametrize("kind", DATABASES)
def test_idle_streams_and_long_polls_take_no_decision_capacity(kind, tmp_path):
    seconds = size("load_seconds", 5)  # each of the three windows of load
    env = {"AUDIENCE_AUTHZ_CHECK_TOKENS": ",".join(TOKENS)}
    with private_server(kind, tmp_path, env=env) as (_url, live, api), contextlib.ExitStack() as held:
        latest = api.ok(api.get("/v1/events/latest"))["id"]
        body = {"principal": {"account_id": "nobody"}, "action": "apply", "resource": {"audience_id": "none"}}
        _steady_load(live.base_url, TOKENS[0], body, 1)  # warm up
        base, base_errors = _steady_load(live.base_url, TOKENS[0], body, seconds)

        worker = worker_pids(live)[0]
        rss_before = _rss_kb(worker)
        streams = [held.enter_context(_open(live.port, TOKENS[i % 3], "/v1/events/stream")) for i in range(STREAMS)]
        polls = [held.enter_context(_open(live.port, TOKENS[i % 3], f"/v1/events?after={latest}&wait=25"))
                 for i in range(LONG_POLLS)]
        _wait_for(lambda: _subscribers(api)["streams"] == STREAMS and _subscribers(api)["long_polls"] == LONG_POLLS,
                  30)
        rss_per_subscriber = (_rss_kb(worker) - rss_before) / (STREAMS + LONG_POLLS)
        idle_cpu = _cpu_ms_per_s(worker, 3)  # what idle subscribers cost the worker
        streams_only, _ = _steady_load(live.base_url, TOKENS[0], body, seconds)
        analyses = _Analyses(live.base_url, api.token, (live.policy_dir_served() / "model.conf").read_text())
        analyses.start()
        probes = _probe_times(live.base_url)
        loaded, loaded_errors = _steady_load(live.base_url, TOKENS[0], body, seconds)
        probes += _probe_times(live.base_url)
        analysed = analyses.stop()
        assert _subscribers(api)["streams"] == STREAMS  # still held while the load ran

        for sock in streams:  # 200 subscribers gone at once
            sock.close()
        freed_in = _wait_for(lambda: _subscribers(api)["streams"] == 0, 5)
        for sock in polls:
            sock.close()
        _wait_for(lambda: _subscribers(api)["long_polls"] == 0, 5)
        ready = api.ok(api.get("/readyz"))

    log = json_lines(live.log_path.read_text())  # every line the server wrote is one JSON object
    booted = [r for r in log if r.get("message", "").startswith("Booting worker")]
    record("idle streams and long polls beside decisions", kind, streams=STREAMS, long_polls=LONG_POLLS,
           requests=len(base) + len(loaded), errors=base_errors + loaded_errors,
           p99_ms_without=round(_p99(base) * 1000, 2), p99_ms_subscribers_only=round(_p99(streams_only) * 1000, 2),
           p99_ms_with=round(_p99(loaded) * 1000, 2),
           probe_max_ms=round(max(probes) * 1000, 1), freed_in_s=round(freed_in, 2),
           rss_kb_per_subscriber=round(rss_per_subscriber, 1), idle_cpu_ms_per_s=round(idle_cpu, 1),
           analyses=dict(sorted(analysed.items())))
    assert analysed and set(analysed) <= ANALYSIS_ANSWERS, analysed
    assert base_errors == loaded_errors == 0
    assert _p99(loaded) <= 3 * max(_p99(base), 0.005), (_p99(base), _p99(loaded))
    assert max(probes) < 0.1, probes
    assert freed_in < 5
    assert len(booted) == 1, "a worker died and was replaced"
    assert ready["status"] == "ready" and ready["pools"]["decisions"]["busy"] <= 1


@pytest.mark.parametrize("kind", DATABASES)
def test_subscribers_past_the_bounds_are_refused_with_retry_after(kind, tmp_path):
    env = {"AUDIENCE_AUTHZ_MAX_SUBSCRIBERS": "6", "AUDIENCE_AUTHZ_MAX_SUBSCRIBERS_PER_TOKEN": "4",
           "AUDIENCE_AUTHZ_CHECK_TOKENS": ",".join(TOKENS)}
    with private_server(kind, tmp_path, env=env) as (_url, live, api), contextlib.ExitStack() as held:
        world_factory(api)  # some events
        latest = api.ok(api.get("/v1/events/latest"))["id"]
        for _ in range(4):
            held.enter_context(_open(live.port, TOKENS[0], "/v1/events/stream"))
        _wait_for(lambda: _subscribers(api)["streams"] == 4, 10)
        # the token's share is taken: 429 for it, both for a stream and a long poll
        token_refused = requests.get(live.base_url + "/v1/events/stream", timeout=5,
                                     headers={"Authorization": f"Bearer {TOKENS[0]}"})
        poll_refused = requests.get(live.base_url + f"/v1/events?after={latest}&wait=5", timeout=5,
                                    headers={"Authorization": f"Bearer {TOKENS[0]}"})
        for _ in range(2):
            held.enter_context(_open(live.port, TOKENS[1], f"/v1/events?after={latest}&wait=25"))
        _wait_for(lambda: _subscribers(api)["long_polls"] == 2, 10)
        # the worker's places are taken: 503 for anyone
        worker_refused = requests.get(live.base_url + "/v1/events/stream", timeout=5,
                                      headers={"Authorization": f"Bearer {TOKENS[2]}"})
        # a long poll that finds events answers at once: it holds no place
        assert api.ok(api.get("/v1/events?after=0&wait=5"))["next_after"] == latest
        assert api.ok(api.post("/v1/authorize", {"principal": {"account_id": "a"}, "action": "apply",
                                                  "resource": {"audience_id": "b"}}))["decision"] == "deny"
        metrics = api.get("/metrics").body
    for answer, status in ((token_refused, 429), (poll_refused, 429), (worker_refused, 503)):
        assert answer.status_code == status, answer.text
        assert answer.json()["error"]["code"] == "too_many_subscribers"
        assert int(answer.headers["Retry-After"]) > 0
    assert 'audience_authz_feed_subscribers_refused_total{bound="token"} 2.0' in metrics
    assert 'audience_authz_feed_subscribers_refused_total{bound="worker"} 1.0' in metrics


@pytest.mark.parametrize("target", ["/v1/events/%73tream", "/v1/events?after={latest}&wa%69t=25",
                                    "http://x/v1/events/stream", "/v1/events?limit=5&wait=025&after={latest}"])
def test_every_spelling_of_a_subscription_goes_to_the_feed_pool(target, tmp_path):
    """What the app reads as a stream or a long poll never waits on a decision thread: with
    every decision thread taken by one, /v1/authorize would stop."""
    env = {"AUDIENCE_AUTHZ_CHECK_TOKENS": ",".join(TOKENS)}
    with private_server("sqlite", tmp_path, env=env, extra_args=["--threads", "2"]) as (_url, live, api), \
            contextlib.ExitStack() as held:
        latest = api.ok(api.get("/v1/events/latest"))["id"]
        for _ in range(4):
            held.enter_context(_open(live.port, TOKENS[0], target.format(latest=latest)))
        _wait_for(lambda: sum(_subscribers(api)[k] for k in ("streams", "long_polls")) == 4, 10)
        pools = api.ok(api.get("/readyz"))["pools"]
        answer = api.post("/v1/authorize", {"principal": {"account_id": "a"}, "action": "apply",
                                            "resource": {"audience_id": "b"}})
    assert answer.status == 200
    assert pools["feeds"]["busy"] == 4 and pools["decisions"]["busy"] <= 1


def test_readiness_says_saturated_while_every_decision_thread_is_busy_and_requests_wait(tmp_path):
    """A worker of one decision thread, held by a request whose chunked body is still coming:
    the next authorize waits for the thread, /readyz (on a probe thread) answers at once
    503 saturated, and all is well again once the body has come."""
    with private_server("sqlite", tmp_path, extra_args=["--threads", "1"]) as (_url, live, api):
        slow = socket.create_connection(("127.0.0.1", live.port), timeout=10)
        slow.sendall(b"POST /v1/authorize HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + api.token.encode()
                     + b"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"p\r\n")
        _wait_for(lambda: api.ok(api.get("/readyz"))["pools"]["decisions"]["busy"] == 1, 10)
        waiting = []
        queued = threading.Thread(target=lambda: waiting.append(api.post("/v1/authorize", {
            "principal": {"account_id": "a"}, "action": "apply", "resource": {"audience_id": "b"}})))
        queued.start()
        _wait_for(lambda: api.get("/readyz").status == 503, 10)
        saturated = api.get("/readyz")
        slow.sendall(b"0\r\n\r\n")  # the body ends (a malformed one: answered 400)
        queued.join(20)
        slow.close()
        _wait_for(lambda: api.get("/readyz").status == 200, 10)
    assert saturated.body["status"] == "saturated" and saturated.body["capacity"] == "saturated"
    assert saturated.body["pools"]["decisions"] == {"threads": 1, "busy": 1, "queued": 1}
    assert waiting and waiting[0].status == 200 and waiting[0].body["decision"] == "deny"

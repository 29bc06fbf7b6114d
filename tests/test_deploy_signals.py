"""Deploy signals against a live gunicorn server: a USR2 upgrade followed by SIGHUP and a
scrape, and a SIGTERM under load that drains before it closes the socket."""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests

from tests.support import Api, LiveServer
from tests.support.ops import json_lines

pytestmark = pytest.mark.full


def _wait(condition, seconds: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has exited; its reaper (not this test) collects it


def _records(live: LiveServer) -> list[dict]:
    """The server's log lines; a line that is not JSON (a traceback) fails the test with it."""
    text = live.log_path.read_text()
    bad = [line for line in text.splitlines() if line.strip() and not line.startswith("{")]
    assert not bad, text[-4000:]
    return json_lines(text)


def _masters(live: LiveServer) -> list[int]:
    """Pids of the gunicorn masters that started listening, in order."""
    return [int(r["message"].rsplit("(", 1)[1].rstrip(")")) for r in _records(live)
            if r["message"].startswith("Listening at:")]


def _booted(live: LiveServer) -> int:
    return sum(r["message"].startswith("Booting worker") for r in _records(live))


def _metrics_dir(master: int) -> Path:
    """The temporary metrics directory `serve` made: where the master's workers write."""
    workers = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _parent(int(p.name)) == master]
    return next(f.parent for f in Path(tempfile.gettempdir()).glob("audience-authz-metrics-*/*.db")
                if any(f.stem.endswith(f"_{pid}") for pid in workers))


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return 0


def _scrapes_ok(api: Api, times: int = 6) -> list[int]:
    return [api.get("/metrics").status for _ in range(times)]


def test_usr2_upgrade_then_sighup_keeps_metrics_and_workers(tmp_path):
    url = f"sqlite:///{tmp_path / 'authz.db'}"
    with LiveServer(url, extra_args=["--workers", "2", "--threads", "2"],
                    env={"AUDIENCE_AUTHZ_DRAIN_SECONDS": "5"}) as live:
        api = Api(live.base_url, live.token)
        old = live.process.pid
        body = {"principal": {"account_id": f"p_{uuid.uuid4().hex[:8]}"}, "action": "view",
                "resource": {"audience_id": "x"}}
        api.ok(api.post("/v1/authorize", body))
        assert _scrapes_ok(api) == [200] * 6
        metrics_dir = _metrics_dir(old)

        booted = _booted(live)
        os.kill(old, signal.SIGUSR2)  # gunicorn's upgrade: a new master beside the old one
        _wait(lambda: len(_masters(live)) == 2, what="the new master")
        new = _masters(live)[1]
        _wait(lambda: _booted(live) >= booted + 2, what="the new master's workers")
        # the old master leaves (WINCH first only matters when gunicorn runs daemonized)
        os.kill(old, signal.SIGTERM)
        assert live.process.wait(30) == 0
        # no drain: the new master keeps the socket open, so the old one stops at once
        assert not [r for r in _records(live) if r["pid"] == old and r["message"].startswith("draining")]
        assert _alive(new)
        assert metrics_dir.is_dir(), "the old master removed the metrics directory the new one uses"
        assert _scrapes_ok(api) == [200] * 6
        api.ok(api.post("/v1/authorize", body))

        booted = _booted(live)
        os.kill(new, signal.SIGHUP)  # reload: new workers
        _wait(lambda: _booted(live) >= booted + 2, what="workers after SIGHUP")
        time.sleep(0.5)
        assert _alive(new), live.log_path.read_text()[-3000:]
        assert _scrapes_ok(api) == [200] * 6
        assert requests.get(live.base_url + "/healthz", timeout=5).status_code == 200
        api.ok(api.post("/v1/authorize", body))

        os.kill(new, signal.SIGTERM)
        _wait(lambda: not _alive(new), what="the new master to exit")
        assert not metrics_dir.exists(), "the new master took the temporary directory over and removes it"


def _load(url: str, headers: dict, stop: threading.Event, outcomes: list) -> None:
    """One client of a load: a new connection per request, until told to stop."""
    while not stop.is_set():
        try:
            response = requests.post(url, json={"principal": {"account_id": "p"}, "action": "view",
                                                "resource": {"audience_id": "x"}},
                                     headers={**headers, "Connection": "close"}, timeout=10)
            outcomes.append(("status", response.status_code, time.monotonic()))
        except requests.ConnectionError as exc:
            text = repr(exc)
            kind = "refused" if "Connection refused" in text or "Errno 111" in text else "reset"
            outcomes.append((kind, text, time.monotonic()))
            time.sleep(0.01)


def test_sigterm_under_load_drains_first_and_resets_no_connection(tmp_path):
    url = f"sqlite:///{tmp_path / 'authz.db'}"
    drain = 2.0
    with LiveServer(url, extra_args=["--workers", "2", "--threads", "4"],
                    env={"AUDIENCE_AUTHZ_DRAIN_SECONDS": str(drain)}) as live:
        Api(live.base_url, live.token)
        ready = requests.get(live.base_url + "/readyz", timeout=5)
        assert ready.status_code == 200 and ready.json()["status"] == "ready"
        stop, outcomes, probes = threading.Event(), [], []
        auth = {"Authorization": f"Bearer {live.token}"}
        clients = [threading.Thread(target=_load, args=(live.base_url + "/v1/authorize", auth, stop, outcomes))
                   for _ in range(6)]
        for client in clients:
            client.start()
        time.sleep(1.0)
        signalled = time.monotonic()
        live.process.send_signal(signal.SIGTERM)
        # a load balancer's probe: when it reads "draining" it sends no more (the clients stop)
        while time.monotonic() < signalled + 30:
            try:
                probe = requests.get(live.base_url + "/readyz", timeout=5)
            except requests.ConnectionError as exc:
                probes.append(("closed", repr(exc), time.monotonic()))
                break
            probes.append((probe.status_code, probe.json()["status"], time.monotonic()))
            if probe.json()["status"] == "draining":
                break
            time.sleep(0.05)
        stop.set()
        for client in clients:
            client.join(30)
        assert live.process.wait(30) == 0
        # kept answering while draining, then closed
        late = []
        try:
            requests.get(live.base_url + "/healthz", timeout=5)
        except requests.ConnectionError as exc:
            late.append(repr(exc))
        assert late, "the server still listens after it exited"

    assert probes[-1][:2] == (503, "draining"), probes
    assert probes[-1][2] - signalled < drain, "readyz said draining only late"
    resets = [o for o in outcomes if o[0] == "reset"]
    assert resets == [], resets[:3]
    refused = [o for o in outcomes if o[0] == "refused"]
    assert refused == [], "the clients stopped on 'draining', before the socket closed"
    answered = [o for o in outcomes if o[0] == "status"]
    assert len(answered) > 20 and {o[1] for o in answered} == {200}
    assert any(o[2] > signalled for o in answered), "requests after SIGTERM were answered while draining"

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

from tests.ops import json_lines
from tests.support import Api, LiveServer

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
    with LiveServer(url, extra_args=["--workers", "2", "--threads", "2"]) as live:
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

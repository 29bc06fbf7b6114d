"""Helpers of the reliability tests: private databases and servers, killing a server
hard, reading its log, sizes that `make stress` raises through the environment."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import pytest

from tests.support import Api, LiveServer, last_id, postgres_database
from tests.support.invariants import bound

TOKEN = "reliability-token"
DATABASES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.full)]  # PostgreSQL: the full tier


def size(name: str, default: int) -> int:
    """A test size, raised by `make stress` (e.g. AUDIENCE_AUTHZ_STRESS_SECONDS=60)."""
    return int(os.environ.get(f"AUDIENCE_AUTHZ_STRESS_{name.upper()}", default))


@contextlib.contextmanager
def fresh_database(kind: str, tmp_path: Path):
    """An empty database of its own for one test: an SQLite file, or a PostgreSQL database
    dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'reliability.db'}"
    else:
        with postgres_database() as url:
            yield url


@contextlib.contextmanager
def private_server(kind: str, tmp_path: Path, **kwargs):
    """(url, live server, client) on a fresh database, for tests that damage or load it."""
    kwargs.setdefault("token", TOKEN)
    with fresh_database(kind, tmp_path) as url, LiveServer(url, **kwargs) as live:
        yield url, live, Api(live.base_url, kwargs["token"])


def execute(database_url: str, sql: str, params=()) -> None:
    """One statement on the database, outside the service (to damage or inspect it)."""
    with bound(database_url) as database, database.atomic():
        database.execute_sql(sql.replace("?", database.obj.param), params)


def query(database_url: str, sql: str, params=()) -> list[tuple]:
    with bound(database_url) as database:
        return list(database.execute_sql(sql.replace("?", database.obj.param), params))


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def worker_pids(live: LiveServer) -> list[int]:
    """The gunicorn workers of a live server."""
    return _children(live.process.pid)


@contextlib.contextmanager
def frozen(live: LiveServer):
    """The server's gunicorn workers stopped (SIGSTOP) for the block, then resumed
    (SIGCONT): requests sent meanwhile wait in the socket, and are handled on resume."""
    workers = _children(live.process.pid)
    assert workers, "the server has no worker process"
    for pid in workers:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield workers
    finally:
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def kill_hard(live: LiveServer) -> None:
    """SIGKILL the server and its gunicorn workers at once: no request finishes, no
    transaction commits after this."""
    master = live.process.pid
    pids = _children(master) + [master]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    live.process.wait(10)
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid) for pid in pids):
        if time.monotonic() > deadline:
            raise RuntimeError("server processes survived SIGKILL")
        time.sleep(0.05)
    live.log.close()


def _state(pid: int) -> str:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("State:"):
                return line
    return "zombie"


def server_log(live: LiveServer) -> str:
    live.log.flush()
    return live.log_path.read_text(errors="replace")


def retries_logged(live: LiveServer) -> int:
    """Transactions the server retried after a conflict (``actions.run`` logs each)."""
    return server_log(live).count("transaction retry")


def raw_request(base_url: str, data: bytes, timeout: float = 10) -> tuple[int, str, bytes]:
    """Send bytes as they are (what an HTTP client library refuses to send); returns
    (status, header block, body)."""
    import socket
    from urllib.parse import urlparse

    where = urlparse(base_url)
    with socket.create_connection((where.hostname, where.port), timeout=timeout) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # it may answer before reading all
            sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            chunks.append(chunk)
    answer = b"".join(chunks)
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    return status, head.decode("latin-1"), body


def last_ids(api: Api) -> tuple[int, int]:
    """(last event id, last decision id): unchanged when a request stored nothing."""
    return last_id(api, "events"), last_id(api, "decisions")

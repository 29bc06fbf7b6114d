"""The production server: gunicorn with N worker processes, each with its own app,
enforcer and connection pool (nothing is shared across a fork).

SIGTERM drains, then stops gracefully: ``/readyz`` answers 503 ``draining`` at once while
the server keeps accepting and answering for ``drain_seconds`` (time for a load balancer's
probe to take the instance out), then gunicorn stops accepting, lets the requests in flight
finish (up to ``graceful_timeout``) and exits. A second SIGTERM skips the rest of the drain;
SIGINT and SIGQUIT stop at once, as in gunicorn.

Metrics: the workers write prometheus-client's multiprocess files into
``PROMETHEUS_MULTIPROC_DIR``; ``prepare_metrics_dir`` chooses and empties it before
anything imports prometheus_client, and a worker that exits is marked dead so that its
gauges leave the scrape (its counters stay in the totals).

USR2 (gunicorn's zero-downtime upgrade) starts a new master from the old one's
environment while the old one still serves: the new master keeps the metrics directory
as it is (the old workers still write there) and takes it over, and the old master, on
leaving, removes its temporary directory only when no new master is using it.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import tempfile
import time
from multiprocessing.sharedctypes import RawValue
from pathlib import Path

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # read by prometheus-client when first imported
# the temporary metrics directory `serve` made, inherited by a master started by USR2
OWNED_ENV = "_AUDIENCE_AUTHZ_TEMPORARY_METRICS_DIR"
REEXEC_ENV = "GUNICORN_PID"  # set by gunicorn in a master started by USR2: the old master's pid
_arbiter = None  # this process's gunicorn arbiter, once it runs
# set by the master on SIGTERM, read by its workers' /readyz: memory shared across the fork
_DRAINING = RawValue(ctypes.c_bool, False)


def draining() -> bool:
    """Has this server been told to stop (it still answers while it drains)?"""
    return bool(_DRAINING.value)


class _DrainingArbiter(Arbiter):
    """gunicorn's master, with SIGTERM draining before it stops (module docstring)."""

    drain_seconds = 0.0
    _stop_at: float | None = None

    def handle_term(self):
        if self._stop_at is not None or self.drain_seconds <= 0 or _successor_alive():
            raise StopIteration  # a USR2 successor keeps the socket open: nothing to drain
        _DRAINING.value = True
        self._stop_at = time.monotonic() + self.drain_seconds
        self.log.info("draining: /readyz answers 503 draining; stopping in %.1f s", self.drain_seconds)

    def wait_for_signals(self, timeout=1.0):
        if self._stop_at is not None:
            timeout = max(0.0, min(timeout, self._stop_at - time.monotonic()))
        return super().wait_for_signals(timeout=timeout)

    def manage_workers(self):
        if self._stop_at is not None and time.monotonic() >= self._stop_at:
            raise StopIteration  # the main loop's graceful stop
        super().manage_workers()


class Server(BaseApplication):
    def __init__(self, app_kwargs: dict, options: dict, drain_seconds: float = 0.0):
        self.app_kwargs = app_kwargs
        self.options = options
        self.drain_seconds = drain_seconds
        super().__init__()

    def run(self):
        arbiter = _DrainingArbiter(self)
        arbiter.drain_seconds = self.drain_seconds
        arbiter.run()

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        from audience_authz.http.app import create_app

        return create_app(**self.app_kwargs)


def prepare_metrics_dir(given: str = "") -> str:
    """The multiprocess metrics directory: ``PROMETHEUS_MULTIPROC_DIR`` when set (its metric
    files of an earlier run are removed, as prometheus-client requires), else a temporary
    directory removed when the server exits. Call before prometheus_client is imported.

    A master started by USR2 gets the old master's environment: it keeps the directory's
    files (the old workers still count there, and a scrape adds them up) and, when the
    directory is the old master's temporary one, removes it itself when it exits."""
    upgrading = REEXEC_ENV in os.environ
    if given and upgrading and os.environ.get(OWNED_ENV) == given and Path(given).is_dir():
        atexit.register(_remove_dir, given, os.getpid())  # the temporary directory is now ours
        return given
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        if not upgrading:
            for stale in path.glob("*.db"):
                stale.unlink()
        os.environ[MULTIPROC_ENV] = str(path)  # where prometheus-client reads it
        return str(path)
    path = tempfile.mkdtemp(prefix="audience-authz-metrics-")
    os.environ[MULTIPROC_ENV] = path
    os.environ[OWNED_ENV] = path
    atexit.register(_remove_dir, path, os.getpid())
    return path


def _remove_dir(path: str, owner: int) -> None:
    """Remove the temporary metrics directory, in the master only (forked workers inherit
    atexit handlers) and only when no master started by USR2 still uses it."""
    if os.getpid() != owner or _successor_alive():
        return
    shutil.rmtree(path, ignore_errors=True)


def _successor_alive() -> bool:
    pid = getattr(_arbiter, "reexec_pid", 0)
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _when_ready(arbiter) -> None:
    global _arbiter
    _arbiter = arbiter
    args = arbiter.START_CTX["args"]
    if Path(args[1]).name == "__main__.py":
        # started as `python -m audience_authz`: USR2 must start it the same way, since
        # running the package's __main__.py as a script would put the package's own folder
        # first on sys.path, where its `http` hides the standard library's
        arbiter.START_CTX["args"] = [args[0], "-m", "audience_authz", *args[2:]]


def _child_exit(server, worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def run(app_kwargs: dict, *, host: str, port: int, workers: int, threads: int, timeout: int = 30,
        log_level: str = "INFO", drain_seconds: float = 0.0) -> None:
    from audience_authz.http import logs

    options = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread",
        "timeout": timeout,
        "graceful_timeout": 30,  # SIGTERM: stop accepting, finish requests in flight
        "accesslog": None,  # the app writes one JSON access line per request (http/logs.py)
        "loglevel": "info",
        "child_exit": _child_exit,
        "when_ready": _when_ready,
        "worker_exit": _flush_decision_log,
        "post_worker_init": _stop_streams_on_exit,
        "control_socket_disable": True,  # one fixed path per user: servers side by side would share it
        "logconfig_dict": logs.config(log_level),  # gunicorn's own lines as JSON too
    }
    Server(app_kwargs, options, drain_seconds).run()


def _stop_streams_on_exit(worker) -> None:
    """A worker asked to stop (SIGTERM, SIGINT, SIGQUIT) ends its event streams and long
    polls at once, so the graceful stop does not wait for consumers that never hang up."""
    import signal

    from audience_authz.http.routes import STOPPING

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        previous = signal.getsignal(signum)

        def stop(sig, frame, previous=previous):
            STOPPING.set()
            if callable(previous):
                previous(sig, frame)

        signal.signal(signum, stop)


def _flush_decision_log(_arbiter, _worker) -> None:
    """A worker that stops writes the decisions it has batched (engine/decision_log.py)."""
    from audience_authz.engine.decision_log import writer

    writer.flush_at_exit()

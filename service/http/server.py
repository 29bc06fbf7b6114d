"""The production server: gunicorn with N worker processes, each with its own app,
enforcer and connection pool (nothing is shared across a fork).

SIGTERM (or SIGINT) is a graceful stop: gunicorn stops accepting connections, lets the
requests in flight finish (up to ``graceful_timeout``), then exits.

Metrics: the workers write prometheus-client's multiprocess files into
``PROMETHEUS_MULTIPROC_DIR``; ``prepare_metrics_dir`` chooses and empties it before
anything imports prometheus_client, and a worker that exits is marked dead so that its
gauges leave the scrape (its counters stay in the totals).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

from gunicorn.app.base import BaseApplication

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # read by prometheus-client when first imported


class Server(BaseApplication):
    def __init__(self, app_kwargs: dict, options: dict):
        self.app_kwargs = app_kwargs
        self.options = options
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        from audience_authz.http.app import create_app

        return create_app(**self.app_kwargs)


def prepare_metrics_dir(given: str = "") -> str:
    """The multiprocess metrics directory: ``PROMETHEUS_MULTIPROC_DIR`` when set (its metric
    files of an earlier run are removed, as prometheus-client requires), else a temporary
    directory removed when the server exits. Call before prometheus_client is imported."""
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
        os.environ[MULTIPROC_ENV] = str(path)  # where prometheus-client reads it
        return str(path)
    path = tempfile.mkdtemp(prefix="audience-authz-metrics-")
    os.environ[MULTIPROC_ENV] = path
    atexit.register(_remove_dir, path, os.getpid())
    return path


def _remove_dir(path: str, owner: int) -> None:
    if os.getpid() == owner:  # forked workers inherit atexit handlers; only the master removes it
        shutil.rmtree(path, ignore_errors=True)


def _child_exit(server, worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def run(app_kwargs: dict, *, host: str, port: int, workers: int, threads: int, timeout: int = 30,
        log_level: str = "INFO") -> None:
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
        "worker_exit": _flush_decision_log,
        "post_worker_init": _stop_streams_on_exit,
        "control_socket_disable": True,  # one fixed path per user: servers side by side would share it
        "logconfig_dict": logs.config(log_level),  # gunicorn's own lines as JSON too
    }
    Server(app_kwargs, options).run()


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

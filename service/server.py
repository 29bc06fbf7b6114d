"""The production server: gunicorn with N worker processes, each with its own app,
enforcer and connection pool (nothing is shared across a fork)."""

from __future__ import annotations

from gunicorn.app.base import BaseApplication


class Server(BaseApplication):
    def __init__(self, app_kwargs: dict, options: dict):
        self.app_kwargs = app_kwargs
        self.options = options
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        from .app import create_app

        return create_app(**self.app_kwargs)


def run(app_kwargs: dict, *, host: str, port: int, workers: int, threads: int, timeout: int = 30) -> None:
    Server(app_kwargs, {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread",
        "timeout": timeout,
        "graceful_timeout": 30,  # SIGTERM: stop accepting, finish requests in flight
        "accesslog": None,
        "loglevel": "warning",
        "worker_exit": _flush_decision_log,
    }).run()


def _flush_decision_log(_arbiter, _worker) -> None:
    """A worker that stops writes the decisions it has batched (service/decision_log.py)."""
    from .decision_log import writer

    writer.flush_at_exit()

"""Structured logs: one JSON object per line on stderr, each carrying the request id.

The request id comes from the caller's ``X-Request-Id`` (when it is a sane token) or is
made here; it is returned in the response's ``X-Request-Id`` and stamped on every log line
written while the request runs. Each request ends with one access line (method, path,
status, duration, request id, acting account, the ids of the decisions made for it,
which the decision log stores with the request id, and the trace id when the request is
traced: http/tracing.py), never with the token or the body.
"""

from __future__ import annotations

import logging
import logging.config
import re
import time
import uuid

from flask import Flask, g, has_request_context, request, request_started

from audience_authz import spans
from audience_authz.engine import decision_log

REQUEST_ID_HEADER = "X-Request-Id"
_SANE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
access_log = logging.getLogger("audience_authz.access")


class RequestContext(logging.Filter):
    """Adds ``request_id`` to every record logged while a request is being served."""

    def filter(self, record: logging.LogRecord) -> bool:
        if has_request_context() and "request_id" in g:
            record.request_id = g.request_id
        return True


def config(log_level: str = "INFO") -> dict:
    """The ``logging.config.dictConfig`` of the service (gunicorn takes it as logconfig_dict)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request": {"()": RequestContext}},
        "formatters": {"json": {
            "()": "pythonjsonlogger.orjson.OrjsonFormatter",  # half the cost of json's (docs/performance.md)
            "fmt": "%(levelname)s %(name)s %(process)d %(message)s",
            "rename_fields": {"levelname": "level", "name": "logger", "process": "pid"},
            "timestamp": "time",
        }},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
                                "formatter": "json", "filters": ["request"]}},
        "root": {"level": log_level, "handlers": ["stderr"]},
        "loggers": {
            # gunicorn's own lines (worker start and exit, signals) go to the same handler
            "gunicorn.error": {"level": log_level, "handlers": [], "propagate": True},
            "gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": True},
            # Flask's development server writes access lines of its own; ours suffice
            "werkzeug": {"level": "WARNING", "handlers": [], "propagate": True},
            "casbin": {"level": "WARNING", "handlers": [], "propagate": True},  # the model, at each load
        },
    }


def configure(log_level: str = "INFO") -> None:
    logging.config.dictConfig(config(log_level))
    logging.captureWarnings(True)  # Python's warnings become JSON lines too
    # What the lines do not show is not gathered for every record (the logging HOWTO's
    # "Optimization"): the caller's file and line (a walk up the stack), thread and
    # process names. The pid stays.
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False


def request_id() -> str:
    given = request.headers.get(REQUEST_ID_HEADER, "")
    return given if _SANE_ID.match(given) else uuid.uuid4().hex


def register(app: Flask) -> None:
    """Request ids and the access line of each request."""

    def started(sender, **extra):
        g.request_id = request_id()
        g.log_started = time.perf_counter()
        g.decision_ids = decision_log.begin_request(g.request_id)

    request_started.connect(started, app, weak=False)

    @app.after_request
    def access(response):
        rid = g.get("request_id") or request_id()
        response.headers[REQUEST_ID_HEADER] = rid
        started_at = g.get("log_started")
        duration_ms = None if started_at is None else round((time.perf_counter() - started_at) * 1000, 3)
        access_log.info("request", extra={
            "method": request.method, "path": request.path, "status": response.status_code,
            "duration_ms": duration_ms, "account": (request.headers.get("X-Account-Id") or "")[:128] or None,
            "remote_addr": request.remote_addr,
            **({"decision_ids": list(g.decision_ids)} if g.get("decision_ids") else {}),
            **({"trace_id": trace_id} if (trace_id := spans.trace_id()) else {}),
        })
        return response

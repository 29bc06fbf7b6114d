"""Prometheus metrics: the counters every layer increments (served at ``/metrics`` by
``http/metrics.py``, behind the bearer token like the API).

Under gunicorn every worker is a process of its own: ``serve`` then runs prometheus-client's
multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, see ``http/server.py``) and a scrape
adds up the counters of all workers, live or exited. With ``--dev`` the process's own
registry is served.

The metrics (every name starts with ``audience_authz_``):

* ``decisions_total{action, decision, reason}``: decisions made; ``reason`` is the reason
  code of the policy line that decided (allow lines carry one too)
* ``request_duration_seconds{method, endpoint, status}``: latency per endpoint (the route
  pattern, e.g. ``/v1/audiences/<id>``), a histogram
* ``effects_applied_total{type}``: side effects applied by committed actions
* ``policy_info{version}``: 1 for the policy version in force (0 for one replaced by a reload)
* ``policy_reload_failures_total``: policy reloads that failed (the old policy stayed);
  a hot reload increments it through ``reload_failed()``
* ``database_errors_total{error}``: requests that failed on a database error (a server
  fault), by the error's class
"""

from __future__ import annotations

import os
from collections import Counter as Tally

import peewee
from playhouse.pool import MaxConnectionsExceeded
from prometheus_client import Counter, Gauge, Histogram

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

DECISIONS = Counter("audience_authz_decisions_total", "Decisions made, by action, decision and reason code",
                    ["action", "decision", "reason"])
REQUEST_SECONDS = Histogram("audience_authz_request_duration_seconds", "Request latency per endpoint",
                            ["method", "endpoint", "status"])
EFFECTS = Counter("audience_authz_effects_applied_total", "Side effects applied by committed actions",
                  ["type"])
POLICY_INFO = Gauge("audience_authz_policy_info", "1 for the policy version in force",
                    ["version"], multiprocess_mode="livemax")
RELOAD_FAILURES = Counter("audience_authz_policy_reload_failures_total",
                          "Policy reloads that failed (the policy in force stayed)")
DATABASE_ERRORS = Counter("audience_authz_database_errors_total",
                          "Requests that failed on a database error", ["error"])

_DATABASE_ERRORS = (peewee.PeeweeException, MaxConnectionsExceeded)
_policy_version: str | None = None


def labelled(metric, *values: str):
    """``metric.labels(*values)``, kept: prometheus-client resolves labels with a lock and
    checks on every call, a visible share of a decision (docs/performance.md). The label
    sets are bounded (actions, reason codes, routes, status codes)."""
    key = (metric, values)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*values)
    return child


_children: dict[tuple, object] = {}
os.register_at_fork(after_in_child=_children.clear)  # a worker resolves its own


def decision(action: str, decision_: str, reason: str | None) -> None:
    labelled(DECISIONS, action, decision_, reason or "").inc()


def effects_applied(effects: list[dict]) -> None:
    for type_, count in Tally(e["type"] for e in effects).items():
        EFFECTS.labels(type_).inc(count)


def policy_loaded(version: str) -> None:
    """The policy in force is now ``version`` (at start and after each successful reload)."""
    global _policy_version
    if _policy_version is not None and _policy_version != version:
        POLICY_INFO.labels(_policy_version).set(0)
    POLICY_INFO.labels(version).set(1)
    _policy_version = version


def reload_failed() -> None:
    RELOAD_FAILURES.inc()


def database_error(exc: BaseException) -> bool:
    """Count ``exc`` when it is a database error; says whether it was one."""
    if isinstance(exc, _DATABASE_ERRORS):
        DATABASE_ERRORS.labels(type(exc).__name__).inc()
        return True
    return False

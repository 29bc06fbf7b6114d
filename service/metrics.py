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
  pattern, e.g. ``/v1/audiences/<id>``), a histogram whose buckets start at 0.25 ms
* ``effects_applied_total{type}``: side effects applied by committed actions
* ``policy_info{version}``: 1 for the policy version in force (0 for one replaced by a reload)
* ``policy_reload_failures_total``: policy reloads that failed (the old policy stayed);
  a hot reload increments it through ``reload_failed()``
* ``policy_refusals_total{stage}``: policy candidates refused, by the stage that refused them
  (contract, check, tests, verify, smoke)
* ``decision_failures_total{action}``: decisions that raised (not a database error): the
  policy in force cannot decide what the service gathers; ``/readyz`` then says not ready
* ``shadow_decisions_total{shadow, action, outcome}``: live decisions also decided by a shadow
  policy (``outcome`` decided or failed); ``shadow_disagreements_total{shadow, action, from, to}``:
  those it answered otherwise (``from``/``to``: decision, reason and effects)
* ``pool_threads_busy{pool}``, ``pool_requests_queued{pool}``: what holds each thread pool
  of the workers (``decisions``, ``probes``, ``feeds``; http/capacity.py), updated about
  once a second
* ``feed_subscribers{kind}``: open event streams (``stream``) and waiting long polls
  (``long_poll``); ``feed_subscribers_refused_total{bound}``: those refused at a bound
  (``worker``, ``token``)
* ``policy_analyses_active{state}``: policy analyses (check, symbolic diff, proofs, a reload's
  vetting) ``running`` in their processes and ``queued``; ``policy_analyses_finished_total{outcome}``:
  those finished, by outcome (``ok``, ``busy``, ``too_costly``, ``failed``, ``error``)
* ``database_errors_total{error}``: requests that failed on a database error (a server
  fault), by the error's class

Labels are bounded whatever a caller sends: a method outside ``HTTP_METHODS`` counts as
``other``, a path no route matches as ``unmatched``, a database error by the nearest of
``DATABASE_ERROR_CLASSES``. Every counter is exported at zero from the start, so that an
alert on it sees data before its first increment: each effect type, each database error
class, and each (action, decision, reason) the policy in force can give (``initialise``).
"""

from __future__ import annotations

import os
from collections import Counter as Tally

import peewee
from playhouse.pool import MaxConnectionsExceeded
from prometheus_client import Counter, Gauge, Histogram

from audience_authz.vocabulary import EFFECTS as EFFECT_TYPES

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# an authorize takes a few milliseconds: the buckets resolve 0.25 ms .. 5 s
LATENCY_BUCKETS = (0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1,
                   0.25, 0.5, 1.0, 2.5, 5.0)
# most specific first: an error is counted under the first class it is an instance of
DATABASE_ERROR_CLASSES = (MaxConnectionsExceeded, peewee.OperationalError, peewee.IntegrityError,
                          peewee.DataError, peewee.ProgrammingError, peewee.NotSupportedError,
                          peewee.InternalError, peewee.InterfaceError, peewee.DatabaseError,
                          peewee.PeeweeException)

DECISIONS = Counter("audience_authz_decisions_total", "Decisions made, by action, decision and reason code",
                    ["action", "decision", "reason"])
REQUEST_SECONDS = Histogram("audience_authz_request_duration_seconds", "Request latency per endpoint",
                            ["method", "endpoint", "status"], buckets=LATENCY_BUCKETS)
EFFECTS = Counter("audience_authz_effects_applied_total", "Side effects applied by committed actions",
                  ["type"])
POLICY_INFO = Gauge("audience_authz_policy_info", "1 for the policy version in force",
                    ["version"], multiprocess_mode="livemax")
RELOAD_FAILURES = Counter("audience_authz_policy_reload_failures_total",
                          "Policy reloads that failed (the policy in force stayed)")
POLICY_REFUSALS = Counter("audience_authz_policy_refusals_total",
                          "Policy candidates refused, by the stage that refused them", ["stage"])
DECISION_FAILURES = Counter("audience_authz_decision_failures_total",
                            "Decisions that failed on something other than the database", ["action"])
SHADOW_DECISIONS = Counter("audience_authz_shadow_decisions_total",
                           "Live decisions also decided by a shadow policy", ["shadow", "action", "outcome"])
SHADOW_DISAGREEMENTS = Counter("audience_authz_shadow_disagreements_total",
                               "Live decisions a shadow policy answered otherwise", ["shadow", "action", "from", "to"])
DATABASE_ERRORS = Counter("audience_authz_database_errors_total",
                          "Requests that failed on a database error", ["error"])

POOL_BUSY = Gauge("audience_authz_pool_threads_busy", "Threads of a worker's pool serving a request, by pool"
                  " (decisions, probes, feeds)", ["pool"], multiprocess_mode="livesum")
POOL_QUEUED = Gauge("audience_authz_pool_requests_queued", "Requests waiting for a thread of a worker's pool, by pool",
                    ["pool"], multiprocess_mode="livesum")
SUBSCRIBERS = Gauge("audience_authz_feed_subscribers", "Open event streams (stream) and waiting long polls (long_poll)",
                    ["kind"], multiprocess_mode="livesum")
SUBSCRIBERS_REFUSED = Counter("audience_authz_feed_subscribers_refused_total",
                              "Event streams and long polls refused, by the bound reached (worker, token)", ["bound"])

ANALYSES = Gauge("audience_authz_policy_analyses_active", "Policy analyses running, and queued for a process, by state",
                 ["state"], multiprocess_mode="livesum")
ANALYSES_FINISHED = Counter("audience_authz_policy_analyses_finished_total", "Policy analyses by outcome (ok, busy: refused"
                            " for want of a place, too_costly, failed: the process died, error)", ["outcome"])

_DATABASE_ERRORS = (peewee.PeeweeException, MaxConnectionsExceeded)
_policy_version: str | None = None


def initialise(outcomes) -> None:
    """Export every known series at zero: the effect types, the database error classes and
    ``outcomes``, the (action, decision, reason) triples the policy in force can give."""
    for type_ in EFFECT_TYPES:
        EFFECTS.labels(type_)
    for cls in DATABASE_ERROR_CLASSES:
        DATABASE_ERRORS.labels(cls.__name__)
    for action, decision_, reason in outcomes:
        DECISIONS.labels(action, decision_, reason)


def request_labels(method: str, route: str | None, status: int) -> tuple[str, str, str]:
    """Bounded labels of one request: its method (``other`` when not HTTP's own), its
    route pattern (``unmatched`` for none) and its status."""
    return (method if method in HTTP_METHODS else "other", route or "unmatched", str(status))


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


def reload_failed(stage: str | None = None) -> None:
    RELOAD_FAILURES.inc()
    if stage:
        POLICY_REFUSALS.labels(stage).inc()


def decision_failed(action: str) -> None:
    DECISION_FAILURES.labels(action).inc()


def shadow_decided(shadow: str, action: str, failed: bool = False) -> None:
    SHADOW_DECISIONS.labels(shadow, action, "failed" if failed else "decided").inc()


def shadow_disagreed(shadow: str, action: str, before: str, after: str) -> None:
    SHADOW_DISAGREEMENTS.labels(shadow, action, before, after).inc()


def analysis_finished(outcome: str) -> None:
    ANALYSES_FINISHED.labels(outcome).inc()


def is_database_error(exc: BaseException) -> bool:
    return isinstance(exc, _DATABASE_ERRORS)


def database_error(exc: BaseException) -> bool:
    """Count ``exc`` when it is a database error; says whether it was one."""
    if isinstance(exc, _DATABASE_ERRORS):
        nearest = next(cls for cls in DATABASE_ERROR_CLASSES if isinstance(exc, cls))
        DATABASE_ERRORS.labels(nearest.__name__).inc()
        return True
    return False

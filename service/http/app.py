"""The Flask application factory: settings in, one app out (routes, auth, errors, health)."""

from __future__ import annotations

import inspect
import logging
import secrets
import time
import types
import weakref

from flask import current_app, request
from flask_openapi3 import Info, OpenAPI

from audience_authz import config
from audience_authz.engine import decision_log
from audience_authz.http import (
    auth,
    bounds,
    capacity,
    docs,
    errors,
    feed_watch,
    logs,
    metrics,
    openapi,
    paths,
    policy_routes,
    routes,
    server,
    tracing,
)
from audience_authz.http import idempotency as idempotency_keys
from audience_authz.http.responses import ErrorBody, Health, Readiness
from audience_authz.policytools import reload, sandbox
from audience_authz.store import db
from audience_authz.store.models import database

log = logging.getLogger("audience_authz")
# Paths that need no token: the probes (a load balancer sends none; they show no data), the
# OpenAPI document and the Swagger UI page with its scripts (the API's description, no data:
# generators and browsers read them; "Try it out" asks for the token), and the console, which
# checks its own session. docs/operations.md says so.
PROBES = {"/healthz", "/readyz"}
OPEN_DOCUMENTS = {"/openapi.json"}
CONSOLE_PREFIX = "/console"
READY_CACHE_S = 1.0  # an anonymous /readyz reuses a check this recent: probes cannot load the database


def is_open(path: str) -> bool:
    return (path in PROBES or path in OPEN_DOCUMENTS or docs.is_docs_path(path)
            or path == CONSOLE_PREFIX or path.startswith(CONSOLE_PREFIX + "/"))


def generated_token() -> str:
    return secrets.token_urlsafe(24)


def create_app(settings: config.Settings | None = None, *, policy_snapshots=None,
               policy_poll: float = 1.0) -> OpenAPI:
    """The service as a WSGI app. ``settings`` default to the environment's
    (``config.load()``); ``policy_snapshots`` and ``policy_poll`` are the hot reload's."""
    settings = settings or config.load()
    app = OpenAPI(
        __name__,
        info=Info(title="audience-authz", version="1.0.0",
                  description="Authorization for audience sharing between ad accounts"),
        security_schemes={"bearer": {"type": "http", "scheme": "bearer"}},
        doc_prefix="",
        doc_ui=False,
        validation_error_status=400,
        validation_error_callback=errors.validation_error,
        validation_error_model=ErrorBody,
    )
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body
    app.config["MAX_RESPONSE_BYTES"] = settings.max_response
    app.config["SETTINGS"] = settings
    app.json.sort_keys = False
    app.ensure_sync = _sync_once(app.ensure_sync)
    db.init(settings.database, pool_size=settings.db_pool_size, pool_timeout=settings.db_pool_timeout,
            sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms)
    decision_log.writer.interval = settings.decision_log_flush_s
    decision_log.writer.durable = settings.decision_log == "durable"
    # the policy, kept on the last good version of the files (policytools/reload.py)
    app.extensions["authz"] = reload.start(app, settings.policy_dir, policy_snapshots, policy_poll,
                                           settings.shadow_policy_dir)
    # policy analyses: in processes of their own, bounded (policytools/sandbox.py)
    sandbox.configure(sandbox.Limits(
        workers=settings.analysis_workers, queue=settings.analysis_queue, timeout_s=settings.analysis_timeout_s,
        memory_mb=settings.analysis_memory_mb, max_lines=settings.analysis_max_lines,
        max_condition=settings.analysis_max_condition))
    # event streams and long polls: bounded, and fed by one watcher of the feed (http/capacity.py)
    app.extensions["subscribers"] = capacity.Subscribers(settings.max_subscribers, settings.max_subscribers_per_token)
    app.extensions["feed_watcher"] = feed_watch.FeedWatcher(routes.STOPPING)
    errors.fail_closed(routes.decide, lambda: current_app.extensions["authz"])
    app.register_api(routes.api)
    app.register_api(routes.decide)
    app.register_api(policy_routes.api)
    auth.register(app, settings, is_open)  # first: tokens, scopes, rate limit
    paths.register(app)  # then: a path with an encoded '/' is refused before its route runs
    idempotency_keys.register(app, settings)  # then: an action's Idempotency-Key
    from audience_authz.http import console  # imported here only: nothing on the /v1 path loads it

    console.register(app, settings)  # /console: its own session login
    errors.register(app)
    _register_connection(app)
    _register_health(app)
    logs.register(app)
    tracing.register(app, settings)  # after the request id is set: the request span names it
    metrics.register(app, app.extensions["authz"].policy)
    docs.register(app)
    openapi.finish(app)
    bounds.register(app, errors.too_large)  # last: it runs first, so the logs see the status sent
    app.extensions["policy_reloader"].start()  # the watcher and SIGHUP, once the app is whole
    return app


def _sync_once(ensure_sync):
    """Flask asks ``inspect.iscoroutinefunction`` of every hook and view on every request
    (eleven times for an authorize); the answer of a function does not change, so it is
    kept, per function, for as long as the function lives."""
    known: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def cached(func):
        if isinstance(func, types.FunctionType):
            is_async = known.get(func)
            if is_async is None:
                is_async = known[func] = inspect.iscoroutinefunction(func)
            if not is_async:
                return func
        return ensure_sync(func)

    return cached


def _register_connection(app: OpenAPI) -> None:
    @app.before_request
    def open_connection():  # after auth.register's checks: only for authenticated callers
        if not is_open(request.path):
            database.connect(reuse_if_open=True)

    @app.teardown_request
    def release_connection(_exc):
        if not database.is_closed():
            database.close()


def _register_health(app: OpenAPI) -> None:
    app.add_url_rule("/openapi.json", "openapi_json", lambda: app.api_doc)

    @app.get("/healthz", operation_id="healthz", summary="Liveness", responses={200: Health})
    def healthz():
        return {"status": "ok"}

    last_check = [0.0, False]  # (monotonic time, database ready) of this worker's last check

    @app.get("/readyz", operation_id="readyz", summary="Readiness: database reachable, policy loaded, not draining nor saturated",
             description="No token needed (a load balancer's probe): the status, the database's state and the "
                         "policy version. With a valid token also the policy reload figures and the last refused "
                         "reload's problems. 503 when not ready, saturated (every decision thread "
                         "busy and requests waiting) or draining (the server was told to stop and "
                         "still serves for AUDIENCE_AUTHZ_DRAIN_SECONDS).",
             responses={200: Readiness, 503: Readiness})
    def readyz():
        authz = app.extensions["authz"]
        policy = authz.policy
        trusted = auth.caller_scope(app) is not None
        now = time.monotonic()
        if trusted or now - last_check[0] >= READY_CACHE_S:
            last_check[:] = [now, db.database_ready()]
        db_ok = last_check[1]
        # the policy in force must decide what the service asks: on the facts the gatherer
        # builds (once per version), and in the last failed decision of this process, if any
        failing = [{"file": f, "line": n, "message": m} for f, n, m in reload.decision_problems(policy)]
        if authz.failing is not None and authz.failing["policy_version"] == policy.version:
            failing.append({"file": "policy", "line": 0, "message": f"a {authz.failing['action']} decision failed:"
                            f" {authz.failing['error']}"})
        saturated = capacity.decisions_saturated()
        status = ("draining" if server.draining() else "not_ready" if not db_ok or failing
                  else "saturated" if saturated else "ready")
        body = {"status": status, "database": "ok" if db_ok else "unreachable", "policy": "loaded",
                "policy_version": policy.version, "decisions": "failing" if failing else "ok",
                "capacity": "saturated" if saturated else "ok"}
        if trusted:  # what quotes the policy files is for callers with a token
            body.update(reload.STATS.readiness())
            body["pools"] = capacity.snapshot() or None
            body["subscribers"] = app.extensions["subscribers"].snapshot()
            body["analyses"] = sandbox.snapshot()
            if failing:
                body["decision_errors"] = failing
        return body, 200 if status == "ready" else 503

"""The Flask application factory: settings in, one app out (routes, auth, errors, health)."""

from __future__ import annotations

import logging
import secrets

from flask import request
from flask_openapi3 import Info, OpenAPI

from audience_authz import config
from audience_authz.engine import decision_log
from audience_authz.http import auth, docs, errors, logs, metrics, paths, policy_routes, routes
from audience_authz.http.responses import ErrorBody, Health, Readiness
from audience_authz.policytools import reload
from audience_authz.store import db
from audience_authz.store.models import database

log = logging.getLogger("audience_authz")
OPEN_PATHS = {"/healthz"}


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
    db.init(settings.database, pool_size=settings.db_pool_size, pool_timeout=settings.db_pool_timeout,
            sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms)
    decision_log.writer.interval = settings.decision_log_flush_s
    # the policy, kept on the last good version of the files (policytools/reload.py)
    app.extensions["authz"] = reload.start(app, settings.policy_dir, policy_snapshots, policy_poll)
    errors.fail_closed(routes.decide, lambda: app.extensions["authz"])
    app.register_api(routes.api)
    app.register_api(routes.decide)
    app.register_api(policy_routes.api)
    auth.register(app, settings, OPEN_PATHS)  # first: tokens, scopes, rate limit
    paths.register(app)  # then: a path with an encoded '/' is refused before its route runs
    errors.register(app)
    _register_connection(app)
    _register_health(app)
    logs.register(app)
    metrics.register(app, app.extensions["authz"].policy.version)
    docs.register(app)
    return app


def _register_connection(app: OpenAPI) -> None:
    @app.before_request
    def open_connection():  # after auth.register's checks: only for authenticated callers
        if request.path not in OPEN_PATHS:
            database.connect(reuse_if_open=True)

    @app.teardown_request
    def release_connection(_exc):
        if not database.is_closed():
            database.close()


def _register_health(app: OpenAPI) -> None:
    app.add_url_rule("/openapi.json", "openapi_json", lambda: app.api_doc)

    @app.get("/healthz", summary="Liveness", responses={200: Health})
    def healthz():
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: database reachable and policy loaded", security=[{"bearer": []}],
             responses={200: Readiness, 401: ErrorBody, 503: Readiness})
    def readyz():
        authz = app.extensions["authz"]
        db_ok = db.database_ready()
        body = {"database": "ok" if db_ok else "unreachable", "policy_version": authz.policy.version,
                "policy": "loaded", **reload.STATS.readiness(), "status": "ready" if db_ok else "not_ready"}
        return body, 200 if db_ok else 503

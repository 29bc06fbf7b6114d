"""The Flask application: authentication, error answers, health, and the API blueprint."""

from __future__ import annotations

import logging
import os
import secrets

from flask import Response, jsonify, request
from flask_openapi3 import Info, OpenAPI
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from . import auth, db, docs, guards, logs, metrics, policyapi, reload
from .api import api, is_authorize_path
from .errors import ApiError, Denied
from .models import database
from .policy import DEFAULT_POLICY_DIR, Policy
from .responses import ErrorBody, Health, Readiness

log = logging.getLogger("audience_authz")
MAX_BODY_BYTES = 1024 * 1024
OPEN_PATHS = {"/healthz"}


def tokens_from_env() -> list[str]:
    return [t.strip() for t in os.environ.get("AUDIENCE_AUTHZ_TOKENS", "").split(",") if t.strip()]


def generated_token() -> str:
    return secrets.token_urlsafe(24)


def _error(status: int, code: str, message: str) -> Response:
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    return response


def _validation_error(exc: ValidationError) -> Response:
    if request.content_length and request.get_json(silent=True) is None and request.method != "GET":
        return _error(400, "malformed_json", "the request body is not a JSON object")
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first.get("loc", ())) or "body"
    return _error(400, "invalid_request", f"{where}: {first['msg']}")


def create_app(database_url: str | None = None, policy_dir=None, tokens: list[str] | None = None,
               policy_snapshots=None, policy_poll: float = 1.0) -> OpenAPI:
    app = OpenAPI(
        __name__,
        info=Info(title="audience-authz", version="1.0.0",
                  description="Authorization for audience sharing between ad accounts"),
        security_schemes={"bearer": {"type": "http", "scheme": "bearer"}},
        doc_prefix="",
        doc_ui=False,
        validation_error_status=400,
        validation_error_callback=_validation_error,
        validation_error_model=ErrorBody,
    )
    app.config["MAX_CONTENT_LENGTH"] = int(os.environ.get("AUDIENCE_AUTHZ_MAX_BODY", MAX_BODY_BYTES))
    app.json.sort_keys = False
    db.init(database_url)
    # the policy, kept on the last good version of the files (service/reload.py)
    app.extensions["authz"] = reload.start(app, policy_dir or DEFAULT_POLICY_DIR, policy_snapshots, policy_poll)
    app.config["TOKENS"] = tokens if tokens is not None else tokens_from_env()
    app.register_api(api)
    app.register_api(policyapi.api)
    auth.register(app, OPEN_PATHS)  # first: tokens, scopes, rate limit
    guards.register(app)
    _register_hooks(app)
    _register_health(app)
    logs.register(app)
    metrics.register(app, app.extensions["authz"].policy.version)
    docs.register(app)
    return app


def _register_hooks(app: OpenAPI) -> None:
    @app.before_request
    def open_connection():  # after auth.register's checks: only for authenticated callers
        if request.path not in OPEN_PATHS:
            database.connect(reuse_if_open=True)

    @app.teardown_request
    def release_connection(_exc):
        if not database.is_closed():
            database.close()

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError):
        return _error(exc.status, exc.code, exc.message)

    @app.errorhandler(Denied)
    def denied(exc: Denied):
        return jsonify(exc.body()), 403

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(
            exc.code, "bad_request")
        return _error(exc.code or 400, code, exc.description or exc.name)

    @app.errorhandler(Exception)
    def server_fault(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        metrics.database_error(exc)
        if is_authorize_path():  # fail closed: an error is a deny
            authz = app.extensions["authz"]
            return jsonify({"decision": "deny", "reasons": [
                {"code": "internal_error", "message": authz.policy.message("internal_error")}],
                "effects": [], "policy_version": authz.policy.version, "decision_id": None}), 500
        return _error(500, "internal_error", "the service could not complete the request")


def _register_health(app: OpenAPI) -> None:
    app.add_url_rule("/openapi.json", "openapi_json", lambda: app.api_doc)

    @app.get("/healthz", summary="Liveness", responses={200: Health})
    def healthz():
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: database reachable and policy loaded", security=[{"bearer": []}],
             responses={200: Readiness, 401: ErrorBody, 503: Readiness})
    def readyz():
        authz = app.extensions["authz"]
        db_ok = guards.database_ready()
        body = {"database": "ok" if db_ok else "unreachable", "policy_version": authz.policy.version,
                "policy": "loaded", **reload.STATS.readiness(), "status": "ready" if db_ok else "not_ready"}
        return body, 200 if db_ok else 503

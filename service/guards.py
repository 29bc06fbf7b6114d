"""Failing closed when the database is away, readiness, and the limits on what one
request or response may hold.

* A database that is unreachable, or (SQLite) locked for longer than busy_timeout, is
  ``503`` with code ``database_unavailable`` and ``Retry-After``; on ``/v1/authorize*`` the
  body is a deny with that reason. The action's transaction never committed, so nothing
  was half-applied; the next request opens a fresh connection, so the service recovers
  by itself when the database returns.
* Request bodies over ``MAX_CONTENT_LENGTH`` are 413 (app.py); JSON nested deeper than
  the parser can follow is 400, not a crash; a response over
  ``AUDIENCE_AUTHZ_MAX_RESPONSE`` bytes (default 8 MiB) is replaced by
  ``500 response_too_large`` (a deny on authorize) instead of flooding the caller.
"""

from __future__ import annotations

import logging
import os

import peewee as pw
from flask import jsonify, request
from flask.json.provider import DefaultJSONProvider

from . import metrics
from .api import is_authorize_path
from .db import is_postgres
from .models import database

log = logging.getLogger("audience_authz")
MAX_RESPONSE_BYTES = 8 * 1024 * 1024
READY_LOCK_WAIT_MS = 1000


class _GuardedJSON(DefaultJSONProvider):
    """Flask's JSON, with nesting too deep for the parser reported as malformed JSON."""

    def loads(self, s, **kwargs):
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("the JSON body is nested too deeply") from None


def _deny_or_error(app, status: int, code: str, message: str):
    """The error answer of this path: a deny on authorize (fail closed), else an error."""
    if is_authorize_path():
        authz = app.extensions["authz"]
        body = {"decision": "deny", "reasons": [{"code": code, "message": authz.policy.message(code)}],
                "effects": [], "policy_version": authz.policy.version, "decision_id": None}
    else:
        body = {"error": {"code": code, "message": message}}
    response = jsonify(body)
    response.status_code = status
    return response


def register(app) -> None:
    provider = _GuardedJSON(app)
    provider.sort_keys = app.json.sort_keys
    app.json = provider
    max_response = int(os.environ.get("AUDIENCE_AUTHZ_MAX_RESPONSE", MAX_RESPONSE_BYTES))

    @app.errorhandler(pw.OperationalError)
    @app.errorhandler(pw.InterfaceError)
    def database_unavailable(exc):
        metrics.database_error(exc)
        log.error("database unavailable on %s %s: %s", request.method, request.path,
                  str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        response = _deny_or_error(app, 503, "database_unavailable",
                                  "the database is unreachable or locked; nothing was changed, retry later")
        response.headers["Retry-After"] = "1"
        return response

    @app.errorhandler(405)
    def method_not_allowed(exc):
        response = jsonify({"error": {"code": "method_not_allowed", "message": exc.description}})
        response.status_code = 405
        response.headers.update(dict(exc.get_headers()))  # Allow: the methods it does take
        response.headers["Content-Type"] = "application/json"
        return response

    @app.after_request
    def limit_response(response):
        if not response.is_streamed and (response.content_length or 0) > max_response:
            log.error("response of %s %s too large (%d bytes)", request.method, request.path,
                      response.content_length)
            return _deny_or_error(app, 500, "response_too_large",
                                  f"the answer would exceed {max_response} bytes; ask for less (page)")
        return response


def database_ready() -> bool:
    """Readiness: the database answers, and (SQLite) a writer gets the lock within a second,
    so a database locked by another process reads as not ready."""
    try:
        if is_postgres():
            database.execute_sql("SELECT 1").fetchone()
            return True
        conn = database.connection()
        wait = conn.execute("PRAGMA busy_timeout").fetchone()[0]
        conn.execute(f"PRAGMA busy_timeout = {READY_LOCK_WAIT_MS}")
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(wait)}")
        return True
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        log.warning("readiness: database unavailable: %s", exc)
        return False

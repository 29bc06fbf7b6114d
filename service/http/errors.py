"""Every error answer of the HTTP API, built in one place.

Two bodies exist and no other: ``{"error": {"code", "message"}}`` for bad input, unknown
ids, authentication, limits and faults, and the deny body of a policy decision. Which one
a fault gets depends on the blueprint that served it, not on the URL: the authorize
blueprint fails closed (a fault there is still a deny, with status 500 or 503), every
other route answers an error.
"""

from __future__ import annotations

import logging

import orjson
import peewee as pw
from flask import Flask, Response, current_app, jsonify, request
from flask.json.provider import DefaultJSONProvider
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from audience_authz import metrics
from audience_authz.exceptions import ApiError, Denied
from audience_authz.http import bounds

log = logging.getLogger("audience_authz")

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}
UNAVAILABLE = "the database is unreachable or locked; nothing was changed, retry later"


def error_response(status: int, code: str, message: str) -> Response:
    """The error body: ``{"error": {"code", "message"}}`` with ``status``."""
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    return response


def deny_body(authz, code: str) -> dict:
    """The answer of a decision the service could not make: a deny (fail closed)."""
    return {"decision": "deny", "reasons": [{"code": code, "message": authz.policy.message(code)}],
            "effects": [], "policy_version": authz.policy.version, "decision_id": None}


def denied_body(exc: Denied) -> dict:
    """A policy deny of an action: the reasons of every refused check."""
    first = exc.outcomes[0]
    return {"decision": "deny", "reasons": exc.reasons,
            "policy_version": first.policy_version, "decision_ids": [o.decision_id for o in exc.outcomes]}


def validation_error(exc: ValidationError) -> Response:
    """A request that fails its schema: malformed JSON, or the first field in error."""
    if request.content_length and request.get_json(silent=True) is None and request.method != "GET":
        return error_response(400, "malformed_json", "the request body is not a JSON object")
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first.get("loc", ())) or "body"
    return error_response(400, "invalid_request", f"{where}: {first['msg']}")


_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


class GuardedJSON(DefaultJSONProvider):
    """Flask's JSON, with nesting too deep for the parser reported as malformed JSON, and
    compact answers written by orjson (a fifth of json's time; dates and dataclasses still
    go through Flask's ``default``, and what orjson refuses, through Flask's own dumps)."""

    def dumps(self, obj, **kwargs):
        if not self.sort_keys and kwargs.get("separators", (",", ":")) == (",", ":") and kwargs.keys() <= {"separators"}:
            try:
                return orjson.dumps(obj, default=self.default, option=_ORJSON_OPTIONS).decode()
            except TypeError:  # an int over 64 bits, a key that is not a string, ...
                pass
        return super().dumps(obj, **kwargs)

    def loads(self, s, **kwargs):
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("the JSON body is nested too deeply") from None


def http_error_response(exc: HTTPException) -> Response:
    """An HTTP error of the router or the request parser (404, 405, 413, ...)."""
    response = error_response(exc.code or 400, _HTTP_CODES.get(exc.code, "bad_request"),
                              exc.description or exc.name)
    if exc.code == 405:  # Allow: the methods the route does take
        response.headers["Allow"] = dict(exc.get_headers()).get("Allow", "")
    return response


def _client_error(exc: Exception) -> Response | None:
    """The answer to an error that is the caller's, not the service's; None for a fault."""
    if isinstance(exc, HTTPException):
        return http_error_response(exc)
    if isinstance(exc, ApiError):
        response = error_response(exc.status, exc.code, exc.message)
        response.headers.update(exc.headers)
        return response
    if isinstance(exc, Denied):
        return jsonify(denied_body(exc)), 403
    return None


def _database_message(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def register(app: Flask) -> None:
    """The handlers of every route but the authorize blueprint's faults (``fail_closed``)."""
    provider = GuardedJSON(app)
    provider.sort_keys = app.json.sort_keys
    app.json = provider

    app.register_error_handler(ApiError, _client_error)
    app.register_error_handler(Denied, _client_error)
    app.register_error_handler(HTTPException, _client_error)

    @app.errorhandler(pw.OperationalError)
    @app.errorhandler(pw.InterfaceError)
    def database_unavailable(exc):
        metrics.database_error(exc)
        log.error("database unavailable on %s %s: %s", request.method, request.path, _database_message(exc))
        response = error_response(503, "database_unavailable", UNAVAILABLE)
        response.headers["Retry-After"] = "1"
        return response

    @app.errorhandler(Exception)
    def server_fault(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        metrics.database_error(exc)
        return error_response(500, "internal_error", "the service could not complete the request")


def too_large(response) -> Response:
    """The answer to a read whose answer cannot be cut to the size limit (http/bounds.py)."""
    max_response = current_app.config["MAX_RESPONSE_BYTES"]
    log.error("response of %s %s too large (%d bytes)", request.method, request.path, response.content_length)
    return error_response(500, "response_too_large",
                          f"the answer would exceed {max_response} bytes; ask for less (page)")


def fail_closed(blueprint, authz_of) -> None:
    """A fault on ``blueprint`` (the decision endpoints) is a deny: 503 when the database is
    away, 500 otherwise, and a deny when the answer would be over the size limit. The
    blueprint is module-level: its handlers are set once, and ``authz_of`` reads the app of
    the request, so a second app in one process (tests) neither fails nor answers for the first."""
    if getattr(blueprint, "_fail_closed", False):
        return
    blueprint._fail_closed = True

    @blueprint.errorhandler(pw.OperationalError)
    @blueprint.errorhandler(pw.InterfaceError)
    def database_unavailable(exc):
        metrics.database_error(exc)
        log.error("database unavailable on %s %s: %s", request.method, request.path, _database_message(exc))
        response = jsonify(deny_body(authz_of(), "database_unavailable"))
        response.status_code = 503
        response.headers["Retry-After"] = "1"
        return response

    @blueprint.errorhandler(Exception)
    def server_fault(exc: Exception):
        answer = _client_error(exc)  # bad input stays a 4xx error
        if answer is not None:
            return answer
        log.exception("unhandled error on %s %s", request.method, request.path)
        metrics.database_error(exc)
        return jsonify(deny_body(authz_of(), "internal_error")), 500

    @blueprint.after_request
    def limit_response(response):
        if not bounds.oversize(response):
            return response
        cut = bounds.fitted(response)
        if cut is not None:
            return cut
        log.error("response of %s %s too large (%d bytes)", request.method, request.path,
                  response.content_length)
        denial = jsonify(deny_body(authz_of(), "response_too_large"))
        denial.status_code = 500
        return denial

"""The Idempotency-Key header of the actions: read and checked here, the call named for the
action's transaction (store/idempotency.py), a replayed answer marked.

Every non-GET route of the ``api`` blueprint is an action. The key is the caller's: two
tokens may use the same key for different calls. A key is 1-255 printable ASCII characters
(no space); any other is ``400 invalid_idempotency_key``.
"""

from __future__ import annotations

import hashlib
import re

from flask import g, request

from audience_authz.http.errors import error_response
from audience_authz.store import idempotency

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
_KEY = re.compile(r"[\x21-\x7e]{1,255}")
_SEP = b"\x00"


def fingerprint() -> str:
    """What makes two calls the same request: method, path and query, body, acting account
    and caller's facts."""
    digest = hashlib.sha256()
    for part in (request.method, request.full_path, request.headers.get("X-Account-Id", ""),
                 request.headers.get("X-Authz-Context", "")):
        digest.update(part.encode("utf-8", "surrogateescape") + _SEP)
    digest.update(request.get_data(cache=True))
    return digest.hexdigest()


def register(app, settings) -> None:
    """Hooks after authentication (the caller's identity names the key's owner)."""

    @app.before_request
    def claim():
        key = request.headers.get(HEADER)
        if key is None or request.blueprint != "api" or request.method in ("GET", "HEAD", "OPTIONS"):
            return None
        if not _KEY.fullmatch(key):
            return error_response(400, "invalid_idempotency_key",
                                  f"{HEADER} must be 1-255 printable ASCII characters without spaces")
        g.idempotency = idempotency.use(idempotency.Claim(
            scope=g.get("token_key", ""), key=key, fingerprint=fingerprint(),
            retention_s=settings.idempotency_retention_s))
        return None

    @app.after_request
    def mark_replayed(response):
        current = idempotency.current()
        if current is not None and current.replayed:
            response.headers[REPLAYED] = "true"
        return response

    @app.teardown_request
    def forget(_exc):
        token = g.pop("idempotency", None)
        if token is not None:
            idempotency.reset(token)

"""Paths are routed as the client sent them: an encoded '/' (%2F) is refused, not decoded.

The WSGI server decodes the request path before Flask routes it, so
``/v1/audiences/M1%2Fshares`` would be routed as ``/v1/audiences/M1/shares`` (the share
list of M1). No id contains '/' (``schemas.Id``), so a path segment holding ``%2F`` names
nothing the API has: it is answered 400, read from the raw request target (gunicorn's
``RAW_URI``, ``REQUEST_URI`` of other servers) before the route runs.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from flask import request

from audience_authz.http.errors import error_response

_ENCODED_SLASH = re.compile(r"%2f", re.IGNORECASE)


def raw_path(environ) -> str:
    """The path of the request target as sent (no query), or '' when the server gives none."""
    target = environ.get("RAW_URI") or environ.get("REQUEST_URI") or ""
    if "://" in target.split("?", 1)[0]:  # absolute-form target: http://host/path?query
        return urlsplit(target).path
    return target.split("?", 1)[0]


def register(app) -> None:
    @app.before_request
    def refuse_encoded_slash():
        if _ENCODED_SLASH.search(raw_path(request.environ)):
            return error_response(400, "invalid_path", "a path segment holds an encoded '/' (%2F);"
                                  " no id contains '/', so the path names nothing")
        return None

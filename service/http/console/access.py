"""Who may see the console: a bearer token given once at the login form, then a session.

The session cookie holds the token's scope and a prefix of its SHA-256 digest, never the
token; each request checks that a token with that digest prefix and scope is still known
(tokens come from the settings). No console URL, page or htmx fragment, known or not,
answers without a valid session: it redirects to the login form (an htmx request gets
``HX-Redirect``); only the static files that exist are served without one (the login page
needs them). A session holds its login time and ends ``console_session_hours`` after it,
however it is used. Every POST carries a CSRF token, in the form or in ``X-CSRFToken``.
What a session may do is the API's table (``http/capabilities.py``): ``require``.
Failed logins count in the API's failed-authentication throttle (``auth.FailureThrottle``).
"""

from __future__ import annotations

import hashlib
import posixpath
import secrets
import time
from urllib.parse import quote, unquote, urlsplit

from flask import abort, current_app, g, redirect, render_template, request, session, url_for
from flask_wtf.csrf import CSRFError, generate_csrf, validate_csrf
from werkzeug.exceptions import TooManyRequests
from wtforms import ValidationError

from audience_authz.http import auth, capabilities
from audience_authz.http.console import PREFIX, bp

_CSP = ("default-src 'self'; script-src 'self' 'nonce-{nonce}'; style-src 'self' 'unsafe-inline';"
        " img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def _key(token: str) -> str:
    return hashlib.sha256(token.strip().encode("utf-8", "surrogateescape")).hexdigest()[:16]


def register(app, settings) -> None:
    known = auth.scoped_tokens(settings.scoped_tokens())
    valid = {(digest.hex()[:16], scope) for digest, scope in known.items()}
    app.extensions["console_tokens"] = known
    lifetime = settings.console_session_hours * 3600

    @app.before_request
    def console_session():
        path = request.path
        if path != PREFIX and not path.startswith(PREFIX + "/"):
            return None
        g.csp_nonce = secrets.token_urlsafe(16)
        if _existing_static(app, path) or request.endpoint == "console.login":
            return _check_csrf()
        scope, issued = session.get("scope"), session.get("issued")
        if (scope is None or (session.get("who"), scope) not in valid
                or not isinstance(issued, int | float) or not 0 <= time.time() - issued < lifetime):
            session.clear()
            target = url_for("console.login", next=request.full_path.rstrip("?") if request.method == "GET" else None)
            if request.headers.get("HX-Request"):
                return "", 401, {"HX-Redirect": target}
            return redirect(target)
        g.console_scope = scope
        g.token_key = session["who"]  # the API's rate-limit bucket of this token
        return _check_csrf()

    @app.after_request
    def console_headers(response):
        if request.path == PREFIX or request.path.startswith(PREFIX + "/"):
            response.headers["Content-Security-Policy"] = _CSP.format(nonce=g.get("csp_nonce", ""))
            response.headers["X-Frame-Options"] = "DENY"
            response.headers["X-Content-Type-Options"] = "nosniff"
            response.headers["Referrer-Policy"] = "same-origin"
        return response


def _existing_static(app, path: str) -> bool:
    """A file of the console's static folder (served without a session: the login page
    uses them); any other /console/static/ path needs a session like every console URL."""
    if not path.startswith(PREFIX + "/static/"):
        return False
    name = path[len(PREFIX + "/static/"):]
    folder = app.blueprints["console"].static_folder
    return bool(name) and name in _static_names(folder)


_STATIC: dict[str, frozenset[str]] = {}


def _static_names(folder: str) -> frozenset[str]:
    if folder not in _STATIC:
        import os

        _STATIC[folder] = frozenset(n for n in os.listdir(folder) if os.path.isfile(os.path.join(folder, n)))
    return _STATIC[folder]


def _check_csrf():
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return None
    try:
        validate_csrf(request.form.get("csrf_token") or request.headers.get("X-CSRFToken"))
    except ValidationError as exc:
        raise CSRFError(exc.args[0]) from None
    return None


@bp.errorhandler(CSRFError)
def csrf_refused(exc: CSRFError):
    return render_template("error.html", title="Form expired", message=f"{exc.description} Reload the page and"
                           " send the form again."), 400


@bp.context_processor
def _globals():
    policy = current_app.extensions["authz"].policy
    return {"csrf_token": generate_csrf, "scope": g.get("console_scope"), "may": may, "may_write": may("reload_policy"),
            "csp_nonce": g.get("csp_nonce", ""),
            "policy": policy, "loaded_at": policy.loaded_at.isoformat(timespec="seconds")}


def may(capability: str) -> bool:
    """May this session do ``capability`` (the API's table)?"""
    return capabilities.allows(g.get("console_scope"), capability)


def require(capability: str) -> None:
    """403 unless this session's scope has ``capability``, as the API answers that scope."""
    if not may(capability):
        allowed = ", ".join(sorted(capabilities.CAPABILITIES[capability]))
        abort(403, f"a {g.get('console_scope')} session may not do this ({capability}: {allowed} only)")


def spend(cost: int = 1) -> None:
    """Count a decision of this session against its token's rate limit (429 past it)."""
    wait = auth.spend(current_app, g.token_key, cost)
    if wait is not None:
        raise TooManyRequests(f"over the rate limit of this token; try again in {wait} s", retry_after=wait)


def _safe_next(target: str | None) -> str:
    """Only a console path on this server (no open redirect). The path is judged as a
    browser will resolve it (percent-decoded, dot segments removed) and sent normalised,
    so ``/console/../v1/events`` or ``/console/%2e%2e/healthz`` never leave the console."""
    if target and "\\" not in target:
        parts = urlsplit(target)
        normal = posixpath.normpath(unquote(parts.path)) if parts.path else ""
        if not parts.scheme and not parts.netloc and (normal == PREFIX or normal.startswith(PREFIX + "/")):
            return quote(normal) + (f"?{parts.query}" if parts.query else "")
    return url_for("console.rules")


@bp.route("/login", methods=["GET", "POST"])
def login():
    error = None
    if request.method == "POST":
        failures = current_app.extensions["auth_failures"]
        if wait := failures.blocked():
            return render_template("login.html", title="Log in", next=request.values.get("next", ""),
                                   error=f"Too many failed logins from here; try again in {wait} s."), 429, {
                                       "Retry-After": str(wait)}
        token = request.form.get("token", "")
        scope = auth.scope_of(current_app.extensions["console_tokens"], token) if token.strip() else None
        if scope is None:
            failures.failed()
            error = "That token is not known to this server."
        else:
            session.clear()
            session.permanent = True
            session["scope"], session["who"], session["issued"] = scope, _key(token), int(time.time())
            return redirect(_safe_next(request.form.get("next")))
    return render_template("login.html", title="Log in", error=error,
                           next=request.values.get("next", "")), 401 if error else 200


@bp.post("/logout")
def logout():
    session.clear()
    return redirect(url_for("console.login"))

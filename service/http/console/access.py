"""Who may see the console: a bearer token given once at the login form, then a session.

The session cookie holds the token's scope and a prefix of its SHA-256 digest, never the
token; each request checks that a token with that digest prefix and scope is still known
(tokens come from the settings). No console URL, page or htmx fragment, known or not,
answers without a valid session: it redirects to the login form (an htmx request gets
``HX-Redirect``). Every POST carries a CSRF token, in the form or in ``X-CSRFToken``.
"""

from __future__ import annotations

import hashlib
from urllib.parse import urlsplit

from flask import abort, current_app, g, redirect, render_template, request, session, url_for
from flask_wtf.csrf import CSRFError, generate_csrf, validate_csrf
from wtforms import ValidationError

from audience_authz.http import auth
from audience_authz.http.console import PREFIX, bp

WRITE_SCOPES = ("admin", "full")  # may reload the policy


def _key(token: str) -> str:
    return hashlib.sha256(token.strip().encode("utf-8", "surrogateescape")).hexdigest()[:16]


def register(app, settings) -> None:
    known = auth.scoped_tokens(settings.scoped_tokens())
    valid = {(digest.hex()[:16], scope) for digest, scope in known.items()}
    app.extensions["console_tokens"] = known

    @app.before_request
    def console_session():
        path = request.path
        if path != PREFIX and not path.startswith(PREFIX + "/"):
            return None
        if path.startswith(PREFIX + "/static/") or request.endpoint == "console.login":
            return _check_csrf()
        scope = session.get("scope")
        if scope is None or (session.get("who"), scope) not in valid:
            session.clear()
            target = url_for("console.login", next=request.full_path.rstrip("?") if request.method == "GET" else None)
            if request.headers.get("HX-Request"):
                return "", 401, {"HX-Redirect": target}
            return redirect(target)
        g.console_scope = scope
        return _check_csrf()


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
    return {"csrf_token": generate_csrf, "scope": g.get("console_scope"), "may_write": may_write(),
            "policy": policy, "loaded_at": policy.loaded_at.isoformat(timespec="seconds")}


def may_write() -> bool:
    return g.get("console_scope") in WRITE_SCOPES


def require_write() -> None:
    if not may_write():
        abort(403, "a check-scoped session is read-only: only an admin or full token may do this")


def _safe_next(target: str | None) -> str:
    """Only a console path on this server (no open redirect)."""
    if target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and (parts.path == PREFIX or parts.path.startswith(PREFIX + "/")):
            return target
    return url_for("console.rules")


@bp.route("/login", methods=["GET", "POST"])
def login():
    error = None
    if request.method == "POST":
        token = request.form.get("token", "")
        scope = auth.scope_of(current_app.extensions["console_tokens"], token) if token.strip() else None
        if scope is None:
            error = "That token is not known to this server."
        else:
            session.clear()
            session.permanent = True
            session["scope"], session["who"] = scope, _key(token)
            return redirect(_safe_next(request.form.get("next")))
    return render_template("login.html", title="Log in", error=error,
                           next=request.values.get("next", "")), 401 if error else 200


@bp.post("/logout")
def logout():
    session.clear()
    return redirect(url_for("console.login"))

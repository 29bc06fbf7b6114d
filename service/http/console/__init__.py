"""The policy console: server-rendered pages under ``/console`` for people who would rather
look than read JSON (docs/console.md).

Pages: Rules, Matrix, Try, Decisions, Candidate, Events. A login form takes a bearer token
of any scope; the session is Flask's signed cookie (HttpOnly, SameSite=Strict, path
``/console``) keyed by ``console_secret``; every form and htmx request carries a CSRF token
(Flask-WTF). What each scope may do is the API's table (``http/capabilities.py``); the
console's decisions count against its token's rate limit and cost cap. The session lives
``console_session_hours`` from its login, never extended by use; every console answer
carries a Content-Security-Policy (scripts of this server, inline ones by nonce) and may
not be framed.

``app.create_app`` imports this package when it registers it, and no module on the /v1
path imports it: the API loads none of its code or dependencies per request.
"""

from __future__ import annotations

import datetime
import threading
from pathlib import Path

from flask import Blueprint
from flask.sessions import SecureCookieSessionInterface

HERE = Path(__file__).resolve().parent
PREFIX = "/console"

bp = Blueprint("console", __name__, url_prefix=PREFIX, template_folder="templates",
               static_folder="static", static_url_path="/static")


class ConsoleSessions(SecureCookieSessionInterface):
    """Flask opens the session on every request; only the console has one. Elsewhere the
    session is Flask's null session (nothing read, nothing signed, nothing saved): the API's
    requests carry no cookie, and not looking for one is a visible share of a short request."""

    def open_session(self, app, request):
        if request.path == PREFIX or request.path.startswith(PREFIX + "/"):
            return super().open_session(app, request)
        return None

    def get_expiration_time(self, app, session):
        """The login's time plus the lifetime: a cookie re-sent (a CSRF token added) keeps
        the expiry it had, so a session ends when its lifetime does, however busy."""
        issued = session.get("issued")
        if isinstance(issued, int | float):
            return datetime.datetime.fromtimestamp(issued, datetime.UTC) + app.permanent_session_lifetime
        return super().get_expiration_time(app, session)


def register(app, settings) -> None:
    """Mount the console on ``app``: session settings, the access checks, the pages."""
    from audience_authz.http.console import access, pages, policyview  # noqa: F401 - their routes join bp

    app.secret_key = settings.console_secret.get_secret_value()
    app.session_interface = ConsoleSessions()
    app.config.update(
        SESSION_COOKIE_NAME="audience_authz_console",
        SESSION_COOKIE_PATH=PREFIX,  # the API's requests never carry it
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=settings.console_secure_cookie,  # behind TLS: never sent in clear
        PERMANENT_SESSION_LIFETIME=datetime.timedelta(hours=settings.console_session_hours),
        SESSION_REFRESH_EACH_REQUEST=False,  # the cookie's expiry is the login's, not the last visit's
        WTF_CSRF_TIME_LIMIT=None,  # a token lives as long as its session
    )
    access.register(app, settings)
    app.register_blueprint(bp)
    # the rules view runs the policy's test cases (~0.1 s): once per version, not on a first visit
    threading.Thread(target=policyview.of, args=(app.extensions["authz"].policy,), name="console-warm-up",
                     daemon=True).start()

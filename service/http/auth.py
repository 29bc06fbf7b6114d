"""Who may call what: bearer tokens, their scopes, and a per-token rate limit.

Tokens come from the settings (comma-separated environment variables), one per scope
(``AUDIENCE_AUTHZ_TOKENS`` full, ``AUDIENCE_AUTHZ_ADMIN_TOKENS`` admin,
``AUDIENCE_AUTHZ_CHECK_TOKENS`` check). What each scope may do is the one table of
``http/capabilities.py``, which the console reads too. A token outside its scope gets
``403 {"error": {"code": "insufficient_scope"}}``; an endpoint the table does not name
(e.g. one added later) needs ``full``. Tokens are compared as
SHA-256 digests with ``hmac.compare_digest`` against every known token (same work
whichever matches, nothing learnt from lengths), and never logged: the rate limiter and
the logs only ever see a digest prefix. This is authentication of the calling service;
what an *account* may do with an audience stays in the policy files.

The rate limit (``AUDIENCE_AUTHZ_RATE_LIMIT``, a limits string such as ``100/second`` or
``6000 per minute``; ``off`` disables it) counts requests per token in each worker
process (in-memory storage), and answers ``429 {"error": {"code": "rate_limited"}}`` with
``Retry-After``. A batch counts as many requests as it has checks. The default is generous
enough that tests and benchmarks never meet it. The console's decisions count against the
same bucket of the token its session was opened with (``spend``).

Failed authentication (a wrong bearer token, a wrong console login) is throttled per
client address and over all addresses (``AUDIENCE_AUTHZ_AUTH_FAILURE_LIMIT`` and
``AUDIENCE_AUTHZ_AUTH_FAILURE_GLOBAL_LIMIT``): past either, every attempt from there is
answered ``429 {"error": {"code": "too_many_failed_authentications"}}`` with
``Retry-After`` before its token is even looked at, so guessing costs time. A request
without any ``Authorization`` header guesses nothing and is not counted.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import threading
import time

from flask import g, request
from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

from audience_authz.http import capabilities
from audience_authz.http.errors import error_response


class _CounterStorage(MemoryStorage):
    """limits' in-memory storage without its expiry timer. MemoryStorage starts a new
    ``threading.Timer`` (10 ms) from inside ``incr`` whenever the last one has run: under
    load, a thread start every 10 ms in the request path, each waiting for the new thread
    to run, and a race between two requests starting the same timer ("threads can only be
    started once", alisaifee/limits#352). The timer only frees counters of expired
    windows; ``get`` (called by ``incr``) already drops an expired window of the key it
    counts, and the keys are the configured tokens', so none is left to free."""

    def _MemoryStorage__schedule_expiry(self) -> None:  # the private hook named above
        pass


if not hasattr(MemoryStorage, "_MemoryStorage__schedule_expiry"):  # limits changed: see _CounterStorage
    raise ImportError("limits.storage.MemoryStorage has no __schedule_expiry; review http/auth.py")


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def scoped_tokens(by_scope: dict[str, list[str]]) -> dict[bytes, str]:
    """digest -> scope; a token listed under several scopes gets the widest."""
    known: dict[bytes, str] = {}
    for scope in ("check", "admin", "full"):
        for token in by_scope.get(scope, ()):
            known[_digest(token)] = scope
    return known


def scope_of(known: dict[bytes, str], token: str) -> str | None:
    """The scope of ``token`` among ``known`` (None: no such token), with the same work
    whichever token matches; what the console's login checks a token with."""
    presented = _digest(token.strip())
    scope = None
    for digest, candidate in known.items():  # no early exit
        if hmac.compare_digest(presented, digest):
            scope = candidate
    return scope


def permits(scope: str, method: str, route: str | None) -> bool:
    """May a token of ``scope`` call ``method route``? (route None: no such endpoint, the
    router answers 404/405 itself)."""
    if route is None:
        return True
    return capabilities.allows(scope, capabilities.of_route(method, route))


def presented(known: dict[bytes, str]) -> tuple[bytes, str | None]:
    """The digest of the request's bearer token and its scope (None: no valid token)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    digest_ = _digest(token.strip())
    scope = None
    for digest, candidate in known.items():  # no early exit: same work for any token
        if hmac.compare_digest(digest_, digest) and scheme.lower() == "bearer":
            scope = candidate
    return digest_, scope


def caller_scope(app) -> str | None:
    """The scope of this request's token, None without a valid one: for an open path that
    shows more to an authenticated caller (``/readyz``)."""
    return presented(app.extensions["auth_tokens"])[1]


def register(app, settings, is_open) -> None:
    """Authenticate every request whose path ``is_open`` refuses, enforce scopes, then
    rate-limit. Call before any other before_request hook that needs an authenticated caller."""
    known = scoped_tokens(settings.scoped_tokens())
    app.extensions["auth_tokens"] = known
    failures = FailureThrottle(settings.auth_failure_limit, settings.auth_failure_global_limit)
    app.extensions["auth_failures"] = failures

    @app.before_request
    def authenticate():
        if is_open(request.path):
            return None
        guessing = "Authorization" in request.headers
        if guessing and (wait := failures.blocked()):
            return failures.refusal(wait)
        digest, scope = presented(known)
        if scope is None:
            if guessing:
                failures.failed()
            response = error_response(401, "unauthorized", "a valid 'Authorization: Bearer <token>' is required")
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
        route = request.url_rule.rule if request.url_rule is not None else None
        if not permits(scope, request.method, route):
            return error_response(403, "insufficient_scope",
                          f"a {scope} token may not call {request.method} {route}")
        g.token_key = digest.hex()[:16]  # what the rate limiter counts by
        g.token_scope = scope
        return None

    _rate_limit(app, settings.rate_limit, is_open)


_BATCH_ROUTE = ("POST", "/v1/authorize/batch")


def _cost() -> int:
    """What a request counts in the rate limit: a batch, each of its checks (so a batch
    is no way around the limit); any other request, one."""
    rule = request.url_rule.rule if request.url_rule is not None else None
    if (request.method, rule) != _BATCH_ROUTE:
        return 1
    body = request.get_json(silent=True)
    checks = body.get("checks") if isinstance(body, dict) else None
    return max(1, len(checks)) if isinstance(checks, list) else 1


def _rate_limit(app, text: str, is_open) -> None:
    """A fixed window per token (the ``limits`` library, which Flask-Limiter is built on,
    used directly: Flask-Limiter's per-request resolution of limits cost more than a whole
    decision; the benchmark showed it)."""
    text = text.strip()
    if text.lower() in ("", "off", "none", "0"):
        return
    limit = parse(text)
    window = FixedWindowRateLimiter(_CounterStorage())
    app.extensions["rate_limit"] = (window, limit, text)

    @app.before_request
    def rate_limited():
        key = g.get("token_key")
        if key is None or is_open(request.path):
            return None
        cost = _cost()
        if window.hit(limit, key, cost=cost):
            return None
        reset_at, _ = window.get_window_stats(limit, key)
        counted = f"; a batch counts each of its {cost} checks" if cost > 1 else ""
        response = error_response(429, "rate_limited", f"over the rate limit of this token ({text}){counted}")
        response.headers["Retry-After"] = str(max(1, math.ceil(reset_at - time.time())))
        return response


def spend(app, key: str, cost: int = 1) -> int | None:
    """Count ``cost`` requests against the bucket of the token whose digest prefix is
    ``key`` (what the console's decisions do); the seconds to wait when over the limit,
    else None."""
    found = app.extensions.get("rate_limit")
    if found is None:
        return None
    window, limit, _ = found
    if window.hit(limit, key, cost=cost):
        return None
    reset_at, _ = window.get_window_stats(limit, key)
    return max(1, math.ceil(reset_at - time.time()))


class FailureThrottle:
    """Failed authentications counted per client address and over all of them (a moving
    window of the ``limits`` library); only failures are counted."""

    def __init__(self, per_address: str, overall: str):
        self.limits = [(parse(text), by) for text, by in ((per_address, "address"), (overall, "all"))
                       if text.strip().lower() not in ("", "off", "none", "0")]
        # MemoryStorage (its expiry timer frees the windows of addresses gone quiet): hits under
        # a lock, as two threads starting its timer at once fail (alisaifee/limits#352)
        self.window = MovingWindowRateLimiter(MemoryStorage())
        self.lock = threading.Lock()

    def _keys(self):
        address = request.remote_addr or "unknown"
        for limit, by in self.limits:
            yield limit, ("auth-failure", address if by == "address" else "*")

    def blocked(self) -> int | None:
        """Seconds to wait when this client (or everyone) is past a limit, else None."""
        waits = []
        for limit, key in self._keys():
            if not self.window.test(limit, *key):
                reset_at, _ = self.window.get_window_stats(limit, *key)
                waits.append(max(1, math.ceil(reset_at - time.time())))
        return max(waits) if waits else None

    def failed(self) -> None:
        with self.lock:  # failures only: never on a valid request's path
            for limit, key in self._keys():
                self.window.hit(limit, *key)

    @staticmethod
    def refusal(wait: int):
        response = error_response(429, "too_many_failed_authentications",
                                  f"too many failed authentications from here; try again in {wait} s")
        response.headers["Retry-After"] = str(wait)
        return response

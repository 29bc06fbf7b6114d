"""The exceptions of the client: misuse and an unavailable service, never a policy deny
(a deny is an answer: ``Decision`` or ``Denied``)."""

from __future__ import annotations


class AuthzError(Exception):
    """Base of the client's exceptions; ``request_id`` is the call's X-Request-Id."""

    def __init__(self, message: str, *, request_id: str | None = None):
        super().__init__(message)
        self.request_id = request_id


class RequestError(AuthzError):
    """The service refused the request itself: a 4xx other than a policy deny. On
    ``authorize`` this is a bug or a misconfiguration of the caller (400 invalid_request,
    401 unauthorized, 403 insufficient_scope, 413), so it is raised, not turned into a deny."""

    def __init__(self, status: int, code: str, message: str, *, request_id: str | None = None):
        super().__init__(f"HTTP {status} {code}: {message}", request_id=request_id)
        self.status, self.code, self.message = status, code, message


class RateLimited(RequestError):
    """429 on an action call, and waiting ``retry_after`` seconds did not fit in the call's
    deadline (or the retries were used up)."""

    def __init__(self, retry_after: float | None, message: str, *, request_id: str | None = None):
        super().__init__(429, "rate_limited", message, request_id=request_id)
        self.retry_after = retry_after


class Unavailable(AuthzError):
    """An action call got no usable answer: no connection, the deadline passed, a 5xx or a
    malformed answer. ``sent`` is False only when no attempt can have reached the service
    (nothing changed); when True, an action may have taken effect: call it again with the
    same ``idempotency_key`` to be answered, never applied twice."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 request_id: str | None = None, sent: bool = True):
        super().__init__(message, request_id=request_id)
        self.status, self.code, self.sent = status, code, sent

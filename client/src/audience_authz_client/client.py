"""The client: one method per endpoint, each call within one deadline.

Answers, denies and errors
    ``authorize`` returns a ``Decision``; ``allowed`` is True only for a well-formed 200
    ``allow``. It fails closed: no connection, the deadline passing, a 5xx, a 429 still
    limited at the deadline, or a malformed answer is a *deny* (``Decision.error`` says
    why; the reason is the service's own when it gave one, else ``unavailable`` or
    ``rate_limited``), logged at WARNING. A misuse is raised, not denied: 400 (bad input),
    401 (token), 403 ``insufficient_scope`` and other 4xx raise ``RequestError``.

    The action calls return their result or, when the policy refuses, a ``Denied`` answer
    (``Result | Denied``: the type checker makes the caller look). A 4xx raises
    ``RequestError`` (404 for an unknown id, 409, ...), 429 ``RateLimited``, no usable
    answer ``Unavailable``.

Deadline
    ``timeout`` is the whole call's budget in seconds: connecting, every retry, backoff and
    429 waits, and reading the answer. A hung server costs at most about ``timeout``.

Retries (``retries`` more attempts at most, backoff ``backoff * 2**n`` seconds)
    * every call, when the connection could not be made (nothing was sent), on a timeout,
      a dropped connection and 500/502/503/504;
    * every call on 429 (the service refused it before doing anything), after waiting the
      answer's ``Retry-After``, only if that wait fits in what is left of the deadline;
      each wait is logged at WARNING.
    Every action (PUT, POST, PATCH, DELETE) sends an ``Idempotency-Key``: a new one per
    call, the same on every retry of the call, so a
    retry of a call that did reach the service is answered with its first answer and never
    applied twice. ``Unavailable.sent`` says whether the call may have reached it.

Request ids
    Each call sends ``X-Request-Id``: the caller's ``request_id=`` or a new one, the same on
    every retry of the call. The service logs it on its access line and stores it in the
    decision log row; answers and exceptions carry it (``request_id``).

Ids
    Every id is one path segment, percent-escaped (``/``, ``?``, ``#``, ``%`` and dots
    included): an id can never reach another resource than the one named.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter

from audience_authz_client.errors import RateLimited, RequestError, Unavailable
from audience_authz_client.types import (
    Account,
    Action,
    AdGroup,
    AdGroupResult,
    Audience,
    AudienceList,
    AudienceResult,
    BusinessCenter,
    Check,
    Decision,
    DecisionPage,
    DeleteResult,
    Denied,
    Event,
    EventPage,
    EventType,
    MembersOp,
    Reason,
    ShareList,
    ShareLog,
    ShareResult,
    Source,
    StopResult,
    parse,
)

log = logging.getLogger("audience_authz_client")
BATCH_LIMIT = 1000  # the most checks /v1/authorize/batch takes at once
PAGE_LIMIT = 1000  # the largest page of the lists paged by id
MAX_ANSWER_BYTES = 64 * 1024 * 1024
_RETRY_STATUSES = frozenset({500, 502, 503, 504})
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")  # what the service keeps as given
R = TypeVar("R")
P = TypeVar("P", AudienceList, ShareList)


def segment(value: str) -> str:
    """``value`` as exactly one URL path segment. ``quote`` leaves dots alone, and a
    segment that is "." or ".." would be resolved away by URL normalisation; escape it."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"an id must be a non-empty string, not {value!r}")
    escaped = quote(value, safe="")
    return escaped.replace(".", "%2E") if set(value) == {"."} else escaped


def path(*segments: str) -> str:
    """``/v1/`` and the segments, each escaped: ``path("audiences", id, "shares")``."""
    return "/v1/" + "/".join(segment(s) for s in segments)


@dataclass(frozen=True)
class _Answer:
    status: int
    body: object  # decoded JSON, or None when it was not JSON
    headers: Mapping[str, str]
    request_id: str


class _NoAnswer(Exception):
    """No usable HTTP answer within the deadline (the message says why)."""


def _no_answer(message: str, sent: bool) -> _NoAnswer:
    failure = _NoAnswer(message)
    failure.sent = sent  # type: ignore[attr-defined]
    return failure


class _Limited(Exception):
    def __init__(self, answer: _Answer, retry_after: float | None):
        super().__init__(f"HTTP 429, Retry-After {retry_after}")
        self.answer, self.retry_after = answer, retry_after


class AuthzClient:
    """``AuthzClient(base_url, token, timeout=2.0)``; thread-safe for concurrent calls as a
    ``requests.Session`` is (one connection pool); close it, or use it as a context manager."""

    def __init__(self, base_url: str, token: str, *, timeout: float = 5.0, retries: int = 2,
                 backoff: float = 0.1, batch_size: int = BATCH_LIMIT, pool_size: int = 10):
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retries = max(0, retries)
        self.backoff = backoff
        self.batch_size = max(1, min(batch_size, BATCH_LIMIT))
        self._session = requests.Session()
        self._session.headers.update({"Authorization": f"Bearer {token}", "Accept": "application/json"})
        adapter = HTTPAdapter(max_retries=0, pool_maxsize=pool_size)  # retries are ours
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> AuthzClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- decisions -------------------------------------------------------------------------

    def authorize(self, account_id: str, action: Action, audience_id: str, *,
                  target_account_id: str | None = None, ad_group_id: str | None = None,
                  explain: bool = False, request_id: str | None = None) -> Decision:
        """May ``account_id`` do ``action`` on ``audience_id``? A failure is a deny; a misuse
        (400, 401, 403 insufficient_scope, ...) raises ``RequestError``. ``explain`` adds the
        matched policy line and the facts (``Decision.explanation``)."""
        check = Check(account_id, action, audience_id, target_account_id, ad_group_id)
        rid = _request_id(request_id)
        deadline = time.monotonic() + self.timeout
        body = {**check.body(), **({"explain": True} if explain else {})}
        return self._decide("/v1/authorize", body, rid, deadline,
                            lambda body: parse(Decision, body, request_id=rid), 1)[0]

    def authorize_many(self, checks: Iterable[Check], *, request_id: str | None = None) -> list[Decision]:
        """The decisions of ``checks``, in order, sent in batches within one deadline; a
        batch that fails denies each of its checks."""
        todo = list(checks)
        rid = _request_id(request_id)
        deadline = time.monotonic() + self.timeout
        decisions: list[Decision] = []
        for start in range(0, len(todo), self.batch_size):
            batch = todo[start:start + self.batch_size]

            def results(body: object, n: int = len(batch)) -> list[Decision]:
                items = body.get("results") if isinstance(body, dict) else None
                if not isinstance(items, list) or len(items) != n:
                    raise ValueError("results do not match the checks")
                return [parse(Decision, item, request_id=rid) for item in items]

            decisions += self._decide("/v1/authorize/batch", {"checks": [c.body() for c in batch]}, rid,
                                      deadline, results, len(batch))
        return decisions

    def _decide(self, route: str, body: dict[str, Any], rid: str, deadline: float,
                read: Callable[[object], list[Decision]] | Callable[[object], Decision], n: int) -> list[Decision]:
        def denied(error: str, reasons: tuple[Reason, ...] = ()) -> list[Decision]:
            log.warning("authorization failed closed (request %s): %s", rid, error)
            code: Any = "unavailable"
            reason = reasons or (Reason(code, error),)
            return [Decision("deny", reason, request_id=rid, error=error)] * n

        try:
            answer = self._send("POST", route, rid, deadline, body=body)
        except _NoAnswer as exc:
            return denied(str(exc))
        except _Limited as limited:
            return denied(str(limited), (Reason("rate_limited", str(limited)),))
        if answer.status == 200:
            try:
                parsed = read(answer.body)
            except ValueError as exc:
                return denied(f"malformed answer: {exc}")
            return parsed if isinstance(parsed, list) else [parsed]
        if 400 <= answer.status < 500:
            raise _request_error(answer)
        return denied(f"HTTP {answer.status}", _service_reasons(answer.body))

    # -- entities --------------------------------------------------------------------------

    def upsert_business_center(self, business_center_id: str, name: str, cross_bc_allowlisted: bool | None = None,
                               *, request_id: str | None = None) -> BusinessCenter:
        """``cross_bc_allowlisted`` None: left out, so the stored value stays (false when new);
        a narrowing that ends shares is only made by naming it."""
        body: dict[str, Any] = {"name": name}
        if cross_bc_allowlisted is not None:
            body["cross_bc_allowlisted"] = cross_bc_allowlisted
        return self._read(BusinessCenter, "PUT", path("business-centers", business_center_id), request_id,
                          body=body)

    def upsert_account(self, account_id: str, name: str, business_center_id: str | None = None, *,
                       leave_business_center: bool = False, request_id: str | None = None) -> Account:
        """``business_center_id`` None: the account stays in its Business Center (none when
        new); ``leave_business_center``: it leaves its Business Center."""
        body: dict[str, Any] = {"name": name}
        if business_center_id is not None or leave_business_center:
            body["business_center_id"] = business_center_id
        return self._read(Account, "PUT", path("accounts", account_id), request_id, body=body)

    def accept_terms(self, account_id: str, *, request_id: str | None = None) -> Account | Denied:
        return self._act(Account, "POST", path("accounts", account_id, "terms-acceptance"), request_id,
                         account=account_id)

    def list_audiences(self, account_id: str, *, after: str | None = None, limit: int = 100,
                       action: str | None = None, request_id: str | None = None) -> AudienceList | Denied:
        """One page of the audiences the account owns or has been shared, by id: those after
        ``after`` (the previous page's ``next_after``), at most ``limit`` (1 to 1000). With
        ``action`` (e.g. ``"apply"``), only those the policy allows it on; such a page may
        hold fewer than ``limit``: follow ``next_after`` until None."""
        params = {**_id_page(after, limit), **({"action": action} if action else {})}
        return self._act(AudienceList, "GET", path("accounts", account_id, "audiences"), request_id,
                         params=params, account=account_id)

    def audience_pages(self, account_id: str, *, after: str | None = None, limit: int = PAGE_LIMIT,
                       action: str | None = None) -> Iterator[AudienceList | Denied]:
        """Every page of ``list_audiences``, each its own call (and deadline), until the last;
        a ``Denied`` page ends it."""
        return _pages(lambda cursor: self.list_audiences(account_id, after=cursor, limit=limit, action=action), after)

    # -- audiences -------------------------------------------------------------------------

    def create_audience(self, account_id: str, name: str, source: Source, *, audience_id: str | None = None,
                        member_count: int = 0, request_id: str | None = None) -> AudienceResult | Denied:
        body: dict[str, Any] = {"name": name, "source": source, "member_count": member_count}
        if audience_id is not None:
            body["id"] = audience_id
        return self._act(AudienceResult, "POST", path("audiences"), request_id, body=body, account=account_id)

    def get_audience(self, account_id: str, audience_id: str, *, request_id: str | None = None) -> Audience | Denied:
        return self._act(Audience, "GET", path("audiences", audience_id), request_id, account=account_id)

    def edit_audience(self, account_id: str, audience_id: str, *, name: str | None = None,
                      members: tuple[MembersOp, int] | None = None,
                      request_id: str | None = None) -> AudienceResult | Denied:
        """Rename and/or change members: ``members=("add", 5)`` (add, remove or replace)."""
        body: dict[str, Any] = {}
        if name is not None:
            body["name"] = name
        if members is not None:
            body["members"] = {"op": members[0], "count": members[1]}
        return self._act(AudienceResult, "PATCH", path("audiences", audience_id), request_id, body=body,
                         account=account_id)

    def delete_audience(self, account_id: str, audience_id: str, *,
                        request_id: str | None = None) -> DeleteResult | Denied:
        return self._act(DeleteResult, "DELETE", path("audiences", audience_id), request_id, account=account_id)

    def create_lookalike(self, account_id: str, seed_audience_id: str, name: str, *,
                         lookalike_id: str | None = None, request_id: str | None = None) -> AudienceResult | Denied:
        body = {"name": name}
        if lookalike_id is not None:
            body["id"] = lookalike_id
        return self._act(AudienceResult, "POST", path("audiences", seed_audience_id, "lookalikes"), request_id,
                         body=body, account=account_id)

    def refresh_lookalike(self, account_id: str, audience_id: str, *,
                          request_id: str | None = None) -> AudienceResult | Denied:
        return self._act(AudienceResult, "POST", path("audiences", audience_id, "refresh"), request_id,
                         account=account_id)

    # -- sharing ---------------------------------------------------------------------------

    def share(self, account_id: str, audience_id: str, recipient_ids: Sequence[str], *,
              request_id: str | None = None) -> ShareResult | Denied:
        """Share with 1 to 100 accounts, all or nothing."""
        if isinstance(recipient_ids, str):
            raise TypeError("recipient_ids is a list of account ids, not one string")
        return self._act(ShareResult, "POST", path("audiences", audience_id, "shares"), request_id,
                         body={"account_ids": list(recipient_ids)}, account=account_id)

    def list_shares(self, account_id: str, audience_id: str, *, after: str | None = None, limit: int = 100,
                    request_id: str | None = None) -> ShareList | Denied:
        """One page of the audience's active recipients, by account id: those after ``after``
        (the previous page's ``next_after``), at most ``limit`` (1 to 1000). Owner only."""
        return self._act(ShareList, "GET", path("audiences", audience_id, "shares"), request_id,
                         params=_id_page(after, limit), account=account_id)

    def share_pages(self, account_id: str, audience_id: str, *, after: str | None = None,
                    limit: int = PAGE_LIMIT) -> Iterator[ShareList | Denied]:
        """Every page of ``list_shares``, each its own call (and deadline), until the last;
        a ``Denied`` page ends it."""
        return _pages(lambda cursor: self.list_shares(account_id, audience_id, after=cursor, limit=limit), after)

    def stop_sharing(self, account_id: str, audience_id: str, recipient_id: str | None = None, *,
                     request_id: str | None = None) -> StopResult | Denied:
        """Stop sharing with one recipient, or (``recipient_id=None``) with every recipient."""
        route = (path("audiences", audience_id, "shares", recipient_id) if recipient_id is not None
                 else path("audiences", audience_id, "shares"))
        return self._act(StopResult, "DELETE", route, request_id, account=account_id)

    def share_log(self, account_id: str, audience_id: str, after: int = 0, limit: int = 100, *,
                  request_id: str | None = None) -> ShareLog | Denied:
        return self._act(ShareLog, "GET", path("audiences", audience_id, "share-log"), request_id,
                         params={"after": after, "limit": limit}, account=account_id)

    # -- ad groups (apply) -----------------------------------------------------------------

    def upsert_ad_group(self, account_id: str, ad_group_id: str, name: str, include: Sequence[str] = (),
                        exclude: Sequence[str] = (), *, status: Literal["enabled", "paused"] | None = None,
                        request_id: str | None = None) -> AdGroupResult | Denied:
        """Create or replace an ad group of ``account_id``; including or excluding an
        audience is the ``apply`` action, decided for each audience. ``status`` None: left
        out, the stored status stays (enabled when new); paused -> enabled is ``resume_ad_group``."""
        body: dict[str, Any] = {"name": name, "include": list(include), "exclude": list(exclude)}
        if status is not None:
            body["status"] = status
        return self._act(AdGroupResult, "PUT", path("ad-groups", ad_group_id), request_id, body=body,
                         account=account_id)

    def get_ad_group(self, account_id: str, ad_group_id: str, *, request_id: str | None = None) -> AdGroup | Denied:
        return self._act(AdGroup, "GET", path("ad-groups", ad_group_id), request_id, account=account_id)

    # -- feeds -----------------------------------------------------------------------------

    def events(self, after: int = 0, limit: int = 100, *, account_id: str | None = None,
               audience_id: str | None = None, types: Sequence[EventType] = (), wait: float = 0,
               request_id: str | None = None) -> EventPage:
        """Events after ``after``, oldest first, optionally filtered. ``wait`` > 0 is a long
        poll: the service answers as soon as one event is there, or empty after ``wait``
        seconds (the call's deadline is extended by ``wait``)."""
        params: dict[str, Any] = {"after": after, "limit": limit}
        if account_id is not None:
            params["account_id"] = account_id
        if audience_id is not None:
            params["audience_id"] = audience_id
        if types:
            params["type"] = list(types)  # repeated: ?type=a&type=b
        if wait:
            params["wait"] = wait
        return self._read(EventPage, "GET", "/v1/events", request_id, params=params,
                         extra_time=wait)

    def latest_event_id(self, *, request_id: str | None = None) -> int:
        """The id of the newest event (0 when there is none): where a new consumer starts."""
        rid = _request_id(request_id)
        answer = self._call("GET", "/v1/events/latest", rid)
        latest = answer.body.get("id") if isinstance(answer.body, dict) else None
        if not isinstance(latest, int) or isinstance(latest, bool):
            raise Unavailable("malformed answer: no event id", request_id=rid)
        return latest

    def follow_events(self, after: int = 0, *, account_id: str | None = None, audience_id: str | None = None,
                      types: Sequence[EventType] = (), wait: float = 20) -> Iterator[Event]:
        """Every event after ``after``, as it comes, for ever (long polls of ``wait`` s);
        remember the last ``event.id`` you handled and start from it again."""
        while True:
            page = self.events(after, 1000, account_id=account_id, audience_id=audience_id, types=types,
                               wait=wait)
            yield from page.events
            after = page.next_after

    def stream_events(self, after: int | None = None, *, account_id: str | None = None,
                      audience_id: str | None = None, types: Sequence[EventType] = (),
                      idle_timeout: float = 60) -> Iterator[Event]:
        """Every event after ``after`` (default: only new ones) as it is applied, over
        Server-Sent Events, for ever. When the stream ends or breaks (a server restart, a
        network fault, ``idle_timeout`` seconds without even a keep-alive) it reconnects with
        ``Last-Event-ID``, so each event comes once, in order. A 4xx raises ``RequestError``."""
        params: dict[str, Any] = {}
        if after is not None:
            params["after"] = after
        if account_id is not None:
            params["account_id"] = account_id
        if audience_id is not None:
            params["audience_id"] = audience_id
        if types:
            params["type"] = list(types)
        last: int | None = None
        failures = 0
        while True:
            headers = {"Accept": "text/event-stream", "X-Request-Id": _request_id(None)}
            if last is not None:
                headers["Last-Event-ID"] = str(last)
            try:
                with self._session.get(self.base_url + "/v1/events/stream", params=params, headers=headers,
                                       stream=True, timeout=(self.timeout, idle_timeout)) as response:
                    if 400 <= response.status_code < 500:
                        body = _json_or_none(response.content)
                        raise _request_error(_Answer(response.status_code, body, response.headers,
                                                     headers["X-Request-Id"]))
                    if response.status_code == 200:
                        failures = 0
                        for event in _sse_events(response.iter_lines(decode_unicode=True)):
                            last = event.id
                            yield event
            except requests.RequestException as exc:
                log.warning("event stream interrupted (%s); reconnecting after event %s", exc, last)
            failures += 1
            time.sleep(min(self.backoff * 2 ** min(failures, 6), 5.0))

    def decisions(self, after: int = 0, limit: int = 100, *, request_id: str | None = None) -> DecisionPage:
        return self._read(DecisionPage, "GET", "/v1/decisions", request_id,
                         params={"after": after, "limit": limit})

    # -- transport -------------------------------------------------------------------------

    def _act(self, cls: type[R], method: Literal["GET", "PUT", "POST", "PATCH", "DELETE"], route: str,
             request_id: str | None, *, body: dict[str, Any] | None = None, account: str | None = None,
             params: dict[str, Any] | None = None) -> R | Denied:
        """An action the policy may refuse: its result, or the ``Denied`` answer."""
        rid = _request_id(request_id)
        answer = self._call(method, route, rid, body=body, account=account, params=params)
        if answer.status == 403:
            return _parse(Denied, answer, method, route)
        return _parse(cls, answer, method, route)

    def _read(self, cls: type[R], method: Literal["GET", "PUT"], route: str, request_id: str | None, *,
              body: dict[str, Any] | None = None, params: dict[str, Any] | None = None,
              extra_time: float = 0) -> R:
        """A call no policy decides (entities, feeds): its result; a 403 raises."""
        rid = _request_id(request_id)
        answer = self._call(method, route, rid, body=body, params=params, extra_time=extra_time, denies=False)
        return _parse(cls, answer, method, route)

    def _call(self, method: str, route: str, rid: str, *, body: dict[str, Any] | None = None,
              account: str | None = None, params: dict[str, Any] | None = None, extra_time: float = 0,
              denies: bool = True) -> _Answer:
        """The answer of an action call: 2xx, or (``denies``) 403 with a deny body; raises otherwise."""
        deadline = time.monotonic() + self.timeout + extra_time
        # an action's retries carry one key: the service answers a retry, never applies it twice
        key = None if method == "GET" else uuid.uuid4().hex
        try:
            answer = self._send(method, route, rid, deadline, body=body, account=account, params=params,
                                idempotency_key=key)
        except _NoAnswer as exc:
            raise Unavailable(f"{method} {route}: {exc}", request_id=rid, sent=getattr(exc, "sent", True)) from None
        except _Limited as limited:
            raise RateLimited(limited.retry_after, str(limited), request_id=rid) from None
        body_ = answer.body
        if answer.status == 403 and denies and isinstance(body_, dict) and body_.get("decision") == "deny":
            return answer
        if 400 <= answer.status < 500:
            raise _request_error(answer)
        if answer.status not in (200, 201):
            error = body_.get("error") if isinstance(body_, dict) else None
            code = str(error.get("code")) if isinstance(error, dict) else None
            raise Unavailable(f"{method} {route}: HTTP {answer.status}", status=answer.status, code=code,
                              request_id=rid)
        return answer

    def _send(self, method: str, route: str, rid: str, deadline: float, *, body: object = None,
              account: str | None = None, params: dict[str, Any] | None = None,
              idempotency_key: str | None = None) -> _Answer:
        """One call: attempts until an answer, the retries or the deadline run out. A
        ``_NoAnswer`` raised says (``sent``) whether an attempt may have reached the service."""
        headers = {"X-Request-Id": rid}
        if account is not None:
            headers["X-Account-Id"] = account
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        url = self.base_url + route
        attempt = 0
        sent = False
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _no_answer(f"the call's deadline of {self.timeout}s passed", sent)
            try:
                answer = self._attempt(method, url, rid, headers, body, params, deadline, remaining)
                failure = None
                sent = True
            except _NoAnswer as exc:
                answer, failure = None, exc
                sent = sent or not getattr(exc, "not_sent", False)
                exc.sent = sent  # type: ignore[attr-defined]
            if answer is not None and answer.status == 429:
                wait = _retry_after(answer.headers.get("Retry-After"))
                if attempt >= self.retries or wait is None or time.monotonic() + wait >= deadline:
                    raise _Limited(answer, wait)
                log.warning("rate limited on %s %s (request %s): waiting %.1fs as Retry-After asks",
                            method, route, rid, wait)
                time.sleep(wait)
                attempt += 1
                continue
            if answer is not None and answer.status not in _RETRY_STATUSES:
                return answer
            if attempt >= self.retries:
                if answer is not None:
                    return answer
                raise failure  # type: ignore[misc]
            pause = min(self.backoff * 2 ** attempt, max(0.0, deadline - time.monotonic()))
            time.sleep(pause)
            attempt += 1

    def _attempt(self, method: str, url: str, rid: str, headers: dict[str, str], body: object,
                 params: dict[str, Any] | None, deadline: float, remaining: float) -> _Answer:
        try:
            response = self._session.request(method, url, json=body, params=params, headers=headers,
                                             timeout=(remaining, remaining), stream=True, allow_redirects=False)
        except requests.RequestException as exc:
            failure = _NoAnswer(f"no answer: {exc}")
            failure.not_sent = _not_sent(exc)  # type: ignore[attr-defined]
            raise failure from None
        try:
            content = bytearray()
            for chunk in response.iter_content(65536):
                content += chunk
                if len(content) > MAX_ANSWER_BYTES:
                    raise _NoAnswer(f"the answer is over {MAX_ANSWER_BYTES} bytes")
                if time.monotonic() > deadline:
                    raise _NoAnswer(f"the call's deadline of {self.timeout}s passed while reading the answer")
        except requests.RequestException as exc:
            raise _NoAnswer(f"no answer: {exc}") from None
        finally:
            response.close()
        return _Answer(response.status_code, _json_or_none(bytes(content)), response.headers, rid)


def _id_page(after: str | None, limit: int) -> dict[str, Any]:
    """The query of a list paged by id (the first page has no ``after``)."""
    return {"limit": limit} if after is None else {"after": after, "limit": limit}


def _pages(fetch: Callable[[str | None], P | Denied], after: str | None) -> Iterator[P | Denied]:
    """Pages from ``fetch(cursor)``, following ``next_after`` until it is None or a deny."""
    while True:
        page = fetch(after)
        yield page
        if isinstance(page, Denied) or page.next_after is None:
            return
        after = page.next_after


def _json_or_none(content: bytes) -> object:
    try:
        return json.loads(content) if content else None
    except ValueError:
        return None


def _sse_events(lines: Iterable[str]) -> Iterator[Event]:
    """The events of an SSE body: ``data`` lines joined, dispatched at a blank line;
    comments (keep-alives) and other fields skipped."""
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                yield parse(Event, json.loads("\n".join(data)))
            data = []
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))


def _request_id(given: str | None) -> str:
    if given is None:
        return uuid.uuid4().hex
    if not _SANE_REQUEST_ID.match(given):
        raise ValueError("request_id must be 1-128 characters of A-Z a-z 0-9 . _ : -")
    return given


def _not_sent(exc: requests.RequestException) -> bool:
    """True when the request cannot have reached the service (the connection was never made)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if isinstance(exc, requests.ConnectionError):
        from urllib3.exceptions import MaxRetryError, NewConnectionError

        cause = exc.args[0] if exc.args else None
        reason = cause.reason if isinstance(cause, MaxRetryError) else cause
        return isinstance(reason, NewConnectionError)
    return False


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (the service sends whole seconds; an HTTP date is not waited on)."""
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds < 3600 else None


def _request_error(answer: _Answer) -> RequestError:
    error = answer.body.get("error") if isinstance(answer.body, dict) else None
    error = error if isinstance(error, dict) else {}
    return RequestError(answer.status, str(error.get("code", "bad_request")), str(error.get("message", "")),
                        request_id=answer.request_id)


def _service_reasons(body: object) -> tuple[Reason, ...]:
    """The reasons of a fail-closed answer of the service (5xx), when it gave well-formed ones."""
    try:
        if isinstance(body, dict) and isinstance(body.get("reasons"), list):
            return tuple(parse(Reason, r) for r in body["reasons"])
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            return (parse(Reason, body["error"]),)
    except ValueError:
        pass
    return ()


def _parse(cls: type[R], answer: _Answer, method: str, route: str) -> R:
    try:
        if cls is Denied:
            return parse(cls, answer.body, request_id=answer.request_id)
        return parse(cls, answer.body)
    except ValueError as exc:
        raise Unavailable(f"{method} {route}: malformed answer: {exc}", status=answer.status,
                          request_id=answer.request_id) from None

"""A typed Python client of the service, for the services that call it.

    from audience_authz.client import AuthzClient

    authz = AuthzClient("http://authz.internal:8080", token, timeout=2.0, retries=2)
    decision = authz.authorize("acc_2", "share", "aud_A", target_account_id="acc_3")
    if decision.allowed: ...

Fail closed: ``authorize`` and ``authorize_many`` never raise for a failed call; a refused
connection, a timeout, a 5xx, a 4xx or an answer that is not a well-formed decision is a
*deny* (``Decision.error`` says why, and the reason code is ``unavailable`` unless the
service named one). ``allowed`` is True only for a well-formed 200 answer of ``allow``.

Retries, with exponential backoff (urllib3's Retry): calls without side effects other than
the decision log (GET, PUT upserts, authorize) are retried on connection errors, timeouts
and 500/502/503/504; the other actions (POST, PATCH, DELETE) only when the connection could
not be made, so a request that may have reached the service is never sent twice.

The action calls return the service's JSON answer (a dict) and raise ``Denied`` (403, with
the policy's reasons), ``RequestError`` (another 4xx) or ``Unavailable`` (no answer, 5xx,
malformed answer).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

log = logging.getLogger("audience_authz.client")
UNAVAILABLE = "unavailable"
_RETRY_STATUSES = (500, 502, 503, 504)
BATCH_LIMIT = 1000  # the most checks /v1/authorize/batch takes at once


@dataclass(frozen=True)
class Reason:
    code: str
    message: str = ""
    details: dict = field(default_factory=dict)  # e.g. account_id, ad_group_ids


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reasons: tuple[Reason, ...] = ()
    effects: tuple[dict, ...] = ()
    policy_version: str | None = None
    decision_id: str | None = None
    error: str | None = None  # set when this deny is the client failing closed

    @property
    def decision(self) -> str:
        return "allow" if self.allowed else "deny"

    @property
    def codes(self) -> list[str]:
        return [r.code for r in self.reasons]


@dataclass(frozen=True)
class Check:
    """One question for ``authorize_many``."""

    account_id: str
    action: str
    audience_id: str
    target_account_id: str | None = None
    ad_group_id: str | None = None

    def body(self) -> dict:
        context = {k: v for k, v in (("target_account_id", self.target_account_id),
                                     ("ad_group_id", self.ad_group_id)) if v is not None}
        return {"principal": {"account_id": self.account_id}, "action": self.action,
                "resource": {"audience_id": self.audience_id}, "context": context}


class AuthzError(Exception):
    """Base of the errors of the action calls."""


class Unavailable(AuthzError):
    """No usable answer: connection refused, timeout, 5xx or a malformed body."""


class RequestError(AuthzError):
    """The service refused the request itself (a 4xx other than 403)."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class Denied(AuthzError):
    """The policy denied the action (403); nothing was changed."""

    def __init__(self, reasons: tuple[Reason, ...], body: dict):
        super().__init__("denied: " + ", ".join(r.code for r in reasons))
        self.reasons, self.body = reasons, body

    @property
    def codes(self) -> list[str]:
        return [r.code for r in self.reasons]


def _reasons(items) -> tuple[Reason, ...]:
    if not isinstance(items, list) or not all(isinstance(r, dict) and isinstance(r.get("code"), str)
                                              for r in items):
        raise ValueError("reasons is not a list of {code, message}")
    return tuple(Reason(r["code"], str(r.get("message", "")),
                        {k: v for k, v in r.items() if k not in ("code", "message")}) for r in items)


def _decision(body) -> Decision:
    """A well-formed decision answer, or ValueError."""
    if not isinstance(body, dict) or body.get("decision") not in ("allow", "deny"):
        raise ValueError("not a decision")
    effects = body.get("effects", [])
    if not isinstance(effects, list) or not all(isinstance(e, dict) for e in effects):
        raise ValueError("effects is not a list of objects")
    return Decision(body["decision"] == "allow", _reasons(body.get("reasons", [])), tuple(effects),
                    body.get("policy_version"), body.get("decision_id"))


def _fail_closed(error: str, reasons: tuple[Reason, ...] = ()) -> Decision:
    log.warning("authorization failed closed: %s", error)
    return Decision(False, reasons or (Reason(UNAVAILABLE, error),), error=error)


class AuthzClient:
    def __init__(self, base_url: str, token: str, *, timeout: float = 5.0, retries: int = 2,
                 backoff: float = 0.1, batch_size: int = BATCH_LIMIT):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.batch_size = max(1, min(batch_size, BATCH_LIMIT))
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        # idempotent calls: retried on connection errors, timeouts and 5xx
        self._idempotent = self._session(headers, Retry(
            total=retries, backoff_factor=backoff, status_forcelist=_RETRY_STATUSES,
            allowed_methods=None, raise_on_status=False, respect_retry_after_header=True))
        # the others: retried only when the connection could not be made (nothing was sent)
        self._once = self._session(headers, Retry(
            total=retries, connect=retries, read=0, status=0, other=0, redirect=0,
            backoff_factor=backoff, allowed_methods=None, raise_on_status=False))

    @staticmethod
    def _session(headers: dict, retry: Retry) -> requests.Session:
        session = requests.Session()
        session.headers.update(headers)
        adapter = HTTPAdapter(max_retries=retry)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session

    def close(self) -> None:
        self._idempotent.close()
        self._once.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- decisions -------------------------------------------------------------------------

    def authorize(self, account_id: str, action: str, audience_id: str, *,
                  target_account_id: str | None = None, ad_group_id: str | None = None) -> Decision:
        """May ``account_id`` do ``action`` on ``audience_id``? Any failure is a deny."""
        check = Check(account_id, action, audience_id, target_account_id, ad_group_id)
        try:
            response = self._idempotent.post(self.base_url + "/v1/authorize", json=check.body(),
                                             timeout=self.timeout)
        except requests.RequestException as exc:
            return _fail_closed(f"no answer: {exc}")
        return self._answer(response, _decision)

    def authorize_many(self, checks: Iterable[Check]) -> list[Decision]:
        """The decisions of ``checks``, in order (sent in batches); a failed batch denies
        each of its checks."""
        checks = list(checks)
        decisions: list[Decision] = []
        for start in range(0, len(checks), self.batch_size):
            decisions += self._batch(checks[start:start + self.batch_size])
        return decisions

    def _batch(self, checks: Sequence[Check]) -> list[Decision]:
        try:
            response = self._idempotent.post(self.base_url + "/v1/authorize/batch",
                                             json={"checks": [c.body() for c in checks]},
                                             timeout=self.timeout)
        except requests.RequestException as exc:
            return [_fail_closed(f"no answer: {exc}")] * len(checks)

        def results(body) -> list[Decision]:
            items = body.get("results") if isinstance(body, dict) else None
            if not isinstance(items, list) or len(items) != len(checks):
                raise ValueError("results do not match the checks")
            return [_decision(item) for item in items]

        answer = self._answer(response, results)
        return answer if isinstance(answer, list) else [answer] * len(checks)

    @staticmethod
    def _answer(response: requests.Response, parse):
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            return _fail_closed(f"HTTP {status}: the answer is not JSON")
        if status != 200:
            reasons = ()
            try:  # keep the service's own reason (e.g. internal_error) when it gave one
                reasons = _reasons(body.get("reasons")) if isinstance(body, dict) else ()
            except ValueError:
                pass
            if not reasons and isinstance(body, dict) and isinstance(body.get("error"), dict):
                reasons = (Reason(str(body["error"].get("code", UNAVAILABLE)),
                                  str(body["error"].get("message", ""))),)
            return _fail_closed(f"HTTP {status}", reasons)
        try:
            return parse(body)
        except ValueError as exc:
            return _fail_closed(f"malformed answer: {exc}")

    # -- entities --------------------------------------------------------------------------

    def upsert_business_center(self, business_center_id: str, name: str,
                               cross_bc_allowlisted: bool | None = None) -> dict:
        """``cross_bc_allowlisted`` None: left out, the stored value stays (false when new)."""
        body = {"name": name}
        if cross_bc_allowlisted is not None:
            body["cross_bc_allowlisted"] = cross_bc_allowlisted
        return self._call("PUT", f"/v1/business-centers/{business_center_id}", body)

    def upsert_account(self, account_id: str, name: str, business_center_id: str | None = None, *,
                       leave_business_center: bool = False) -> dict:
        """``business_center_id`` None: the account stays in its Business Center (none when
        new); ``leave_business_center``: it leaves its Business Center."""
        body: dict = {"name": name}
        if business_center_id is not None or leave_business_center:
            body["business_center_id"] = business_center_id
        return self._call("PUT", f"/v1/accounts/{account_id}", body)

    def accept_terms(self, account_id: str) -> dict:
        return self._call("POST", f"/v1/accounts/{account_id}/terms-acceptance", account=account_id)

    def list_audiences(self, account_id: str) -> dict:
        return self._call("GET", f"/v1/accounts/{account_id}/audiences", account=account_id)

    # -- audiences -------------------------------------------------------------------------

    def create_audience(self, account_id: str, name: str, source: str, *, audience_id: str | None = None,
                        member_count: int = 0) -> dict:
        body = {"name": name, "source": source, "member_count": member_count}
        if audience_id is not None:
            body["id"] = audience_id
        return self._call("POST", "/v1/audiences", body, account=account_id)

    def get_audience(self, account_id: str, audience_id: str) -> dict:
        return self._call("GET", f"/v1/audiences/{audience_id}", account=account_id)

    def edit_audience(self, account_id: str, audience_id: str, *, name: str | None = None,
                      members: dict | None = None) -> dict:
        """Rename and/or change members: ``members={"op": "add"|"remove"|"replace", "count": n}``."""
        body: dict[str, Any] = {}
        if name is not None:
            body["name"] = name
        if members is not None:
            body["members"] = members
        return self._call("PATCH", f"/v1/audiences/{audience_id}", body, account=account_id)

    def delete_audience(self, account_id: str, audience_id: str) -> dict:
        return self._call("DELETE", f"/v1/audiences/{audience_id}", account=account_id)

    def create_lookalike(self, account_id: str, seed_audience_id: str, name: str, *,
                         lookalike_id: str | None = None) -> dict:
        body = {"name": name}
        if lookalike_id is not None:
            body["id"] = lookalike_id
        return self._call("POST", f"/v1/audiences/{seed_audience_id}/lookalikes", body, account=account_id)

    def refresh_lookalike(self, account_id: str, audience_id: str) -> dict:
        return self._call("POST", f"/v1/audiences/{audience_id}/refresh", account=account_id)

    # -- sharing ---------------------------------------------------------------------------

    def share(self, account_id: str, audience_id: str, recipient_ids: Sequence[str]) -> dict:
        return self._call("POST", f"/v1/audiences/{audience_id}/shares",
                          {"account_ids": list(recipient_ids)}, account=account_id)

    def list_shares(self, account_id: str, audience_id: str) -> dict:
        return self._call("GET", f"/v1/audiences/{audience_id}/shares", account=account_id)

    def stop_sharing(self, account_id: str, audience_id: str, recipient_id: str | None = None) -> dict:
        """Stop sharing with one recipient, or (``recipient_id=None``) with every recipient."""
        path = f"/v1/audiences/{audience_id}/shares" + (f"/{recipient_id}" if recipient_id else "")
        return self._call("DELETE", path, account=account_id)

    def share_log(self, account_id: str, audience_id: str, after: int = 0, limit: int = 100) -> dict:
        return self._call("GET", f"/v1/audiences/{audience_id}/share-log",
                          params={"after": after, "limit": limit}, account=account_id)

    # -- ad groups (apply) -----------------------------------------------------------------

    def upsert_ad_group(self, account_id: str, ad_group_id: str, name: str, include: Sequence[str] = (),
                        exclude: Sequence[str] = ()) -> dict:
        """Create or replace an ad group of ``account_id``; including or excluding an
        audience is the ``apply`` action, decided for each audience."""
        return self._call("PUT", f"/v1/ad-groups/{ad_group_id}",
                          {"name": name, "include": list(include), "exclude": list(exclude)},
                          account=account_id)

    def get_ad_group(self, account_id: str, ad_group_id: str) -> dict:
        return self._call("GET", f"/v1/ad-groups/{ad_group_id}", account=account_id)

    # -- feeds -----------------------------------------------------------------------------

    def events(self, after: int = 0, limit: int = 100) -> dict:
        return self._call("GET", "/v1/events", params={"after": after, "limit": limit})

    def decisions(self, after: int = 0, limit: int = 100) -> dict:
        return self._call("GET", "/v1/decisions", params={"after": after, "limit": limit})

    # -- transport -------------------------------------------------------------------------

    def _call(self, method: str, path: str, body: dict | None = None, *, account: str | None = None,
              params: dict | None = None) -> dict:
        session = self._idempotent if method in ("GET", "PUT") else self._once
        headers = {"X-Account-Id": account} if account is not None else {}
        try:
            response = session.request(method, self.base_url + path, json=body, params=params,
                                       headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:
            raise Unavailable(f"{method} {path}: no answer: {exc}") from exc
        try:
            answer = response.json()
        except ValueError:
            answer = None
        status = response.status_code
        if not isinstance(answer, dict):
            raise Unavailable(f"{method} {path}: HTTP {status}, the answer is not a JSON object")
        if status == 403 and answer.get("decision") == "deny":
            try:
                raise Denied(_reasons(answer.get("reasons", [])), answer)
            except ValueError:
                raise Unavailable(f"{method} {path}: malformed deny") from None
        if 400 <= status < 500:
            error = answer.get("error") if isinstance(answer.get("error"), dict) else {}
            raise RequestError(status, str(error.get("code", "bad_request")), str(error.get("message", "")))
        if status not in (200, 201):
            raise Unavailable(f"{method} {path}: HTTP {status}")
        return answer

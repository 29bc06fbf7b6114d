"""The answers of the HTTP API as pydantic models: they put every status code a route can
answer, with its body, into /openapi.json (so generated tests can check each answer
against the document). Extra fields are allowed: an answer may grow, never shrink."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, RootModel

Timestamp = str | None


class _Error(BaseModel):
    code: str = Field(description="stable code, e.g. invalid_request, unauthorized, insufficient_scope")
    message: str


class ErrorBody(BaseModel):
    """Bad input, unknown ids, authentication, limits and server faults."""

    error: _Error


class Reason(BaseModel):
    code: str = Field(description="a reason code of policy/reasons.yaml")
    message: str


class DenyBody(BaseModel):
    """A policy deny of an action: nothing was changed but the decision log."""

    decision: Literal["deny"]
    reasons: list[Reason]
    policy_version: str
    decision_ids: list[str]


class Forbidden(RootModel[DenyBody | ErrorBody]):
    """A policy deny, or a token whose scope does not cover the endpoint."""


class AuthorizeAnswer(BaseModel):
    decision: Literal["allow", "deny"]
    reasons: list[Reason]
    effects: list[dict[str, Any]]
    policy_version: str
    decision_id: str | None = Field(description="null when the service failed closed")


class ErrorOrDeny(RootModel[AuthorizeAnswer | ErrorBody]):
    """On /v1/authorize* a fault is still a deny (fail closed)."""


class BatchAnswer(BaseModel):
    results: list[AuthorizeAnswer]


class BusinessCenterView(BaseModel):
    id: str
    name: str
    cross_bc_allowlisted: bool
    effects: list[dict[str, Any]] = Field(default_factory=list,
                                          description="shares ended because they left the sharing scope")


class AccountView(BaseModel):
    id: str
    name: str
    business_center_id: str | None
    terms_accepted_at: Timestamp
    effects: list[dict[str, Any]] = Field(default_factory=list,
                                          description="shares ended because they left the sharing scope")


class AudienceView(BaseModel):
    id: str
    name: str
    type: Literal["custom", "lookalike"]
    source: str | None
    seed_audience_id: str | None = Field(description="a lookalike's seed audience: shown to the owner only"
                                                     " (null for a recipient; docs/visibility.md)")
    owner_account_id: str
    status: Literal["active", "deleted"]
    member_count: int
    revision: int
    created_at: Timestamp
    updated_at: Timestamp
    deleted_at: Timestamp
    relation: str
    actions: list[str]


class AudienceList(BaseModel):
    account_id: str
    audiences: list[AudienceView]


class AudienceResult(BaseModel):
    audience: AudienceView
    effects: list[dict[str, Any]]


class DeleteResult(BaseModel):
    audience_id: str
    relation: str
    deleted: bool
    removed_from_list: bool
    effects: list[dict[str, Any]]


class ShareResult(BaseModel):
    audience_id: str
    shared_with: list[str]
    recipients: list[str]
    effects: list[dict[str, Any]]


class ShareEntry(BaseModel):
    account_id: str
    created_at: Timestamp
    created_by: str


class ShareList(BaseModel):
    audience_id: str
    shares: list[ShareEntry]


class StopResult(BaseModel):
    audience_id: str
    stopped: list[str]
    effects: list[dict[str, Any]]


class ShareLogEntry(BaseModel):
    id: int
    account_id: str | None
    action: str
    actor: str
    at: Timestamp


class ShareLog(BaseModel):
    audience_id: str
    entries: list[ShareLogEntry]
    next_after: int | None


class AdGroupView(BaseModel):
    id: str
    account_id: str
    name: str
    status: str
    include: list[str]
    exclude: list[str]
    no_audience_targeting: bool
    updated_at: Timestamp


class AdGroupResult(BaseModel):
    ad_group: AdGroupView
    created: bool
    effects: list[dict[str, Any]]


class EventView(BaseModel):
    id: int
    type: str
    audience_id: str | None
    account_id: str | None
    decision_id: str | None
    at: Timestamp
    payload: dict[str, Any]


class EventPage(BaseModel):
    events: list[EventView]
    next_after: int


class DecisionView(BaseModel):
    id: int
    decision_id: str
    principal: str
    action: str
    decision: Literal["allow", "deny"]
    policy_version: str


class DecisionPage(BaseModel):
    decisions: list[DecisionView]
    next_after: int


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    database: str
    policy: str
    policy_version: str


# Every route may answer these; a route lists its own success answers (and 404, 409, ...).
class _Problem(BaseModel):
    file: str
    line: int
    message: str


class _PolicyError(_Error):
    problems: list[_Problem]


class PolicyRefused(BaseModel):
    """The candidate policy fails `policy check` (or its tests); the last good one serves."""

    error: _PolicyError
    policy_version: str | None = None


class ReloadResult(BaseModel):
    status: Literal["loaded", "unchanged"]
    policy_version: str
    previous_version: str | None = None


class DiffReport(BaseModel):
    """Decisions of the log replayed against a candidate policy, grouped by what changed."""

    replayed: int
    changed: int
    unchanged: int
    changes: list[dict[str, Any]]


COMMON = {400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 413: ErrorBody, 429: ErrorBody,
          500: ErrorBody, 503: ErrorBody,
          # answered by the HTTP server (gunicorn) before the request reaches the service
          414: {"description": "The request line is over the server's limit"},
          431: {"description": "A request header is over the server's limit"}}
ACTING = {403: Forbidden, 404: ErrorBody}  # routes that act for X-Account-Id: policy denies
AUTHORIZE = {500: ErrorOrDeny, 503: ErrorOrDeny}

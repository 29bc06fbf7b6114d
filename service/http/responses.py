"""The answers of the HTTP API as pydantic models: they put every status code a route can
answer, with its body, into /openapi.json (so generated tests and generated clients can
rely on each answer's shape). Extra fields are allowed: an answer may grow, never shrink.

Names a caller sends are enums in the document (actions, decisions). Names the service
answers with and may add to are open: a reason code (a policy author adds them to
reasons.yaml) is ``anyOf`` an enum of the known ones (the shipped policy's) or any string;
an effect or an event is ``anyOf`` a discriminated union on ``type`` (one schema per known
type) or a generic effect or event of any other type. So a generated client reads an answer
of a newer service or policy instead of refusing it. (Event payloads: docs/events.md.)
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, RootModel, WithJsonSchema, create_model

from audience_authz.config import shipped_policy_dir
from audience_authz.vocabulary import AUDIENCE_ACTIONS, MATRIX_ACTIONS, SOURCES

Timestamp = Annotated[str | None, Field(description="ISO 8601 UTC, e.g. 2026-01-31T12:00:00.000000Z")]

# the deny reason codes of the shipped policy, and the service's own fail-closed ones
REASON_CODES = (*yaml.safe_load((shipped_policy_dir() / "reasons.yaml").read_text())["deny"],
                "response_too_large")
# open: one of the known codes, or any other string (a policy may add codes)
ReasonCode = Annotated[str, WithJsonSchema({"anyOf": [{"type": "string", "enum": list(REASON_CODES)}, {"type": "string"}]})]
Action = Literal[AUDIENCE_ACTIONS]  # type: ignore[valid-type]
MatrixAction = Literal[MATRIX_ACTIONS]  # type: ignore[valid-type]
Source = Literal[SOURCES]  # type: ignore[valid-type]
Relation = Literal["owner", "recipient", "none"]
StopAction = Literal["stop", "owner_delete", "recipient_remove", "scope_ended"]


class _Error(BaseModel):
    code: str = Field(description="stable code, e.g. invalid_request, unauthorized, insufficient_scope")
    message: str


class ErrorBody(BaseModel):
    """Bad input, unknown ids, authentication, limits and server faults."""

    error: _Error


class Reason(BaseModel):
    code: ReasonCode = Field(description="a reason code of policy/reasons.yaml (stable; a policy may add codes:"
                                         " the enum lists those of the shipped policy)")
    message: str
    account_id: str | None = Field(None, description="the target account the reason is about")
    ad_group_ids: list[str] | None = Field(None, description="applied_to_ad_groups: the ad groups in the way")
    audience_id: str | None = Field(None, description="an ad group upsert: the audience refused")
    more_ad_groups: bool = Field(False, description="applied_to_ad_groups: more ad groups are in the way"
                                                    " than ad_group_ids names (it is cut to 100)")


# -- effects: what an allowed action does besides its own change ------------------------

class Targeting(BaseModel):
    include: list[str]
    exclude: list[str]


class EndShareEffect(BaseModel):
    """The share of ``audience_id`` with ``account_id`` ends."""

    type: Literal["end_share"]
    audience_id: str
    account_id: str
    reason: ReasonCode | None = Field(None, description="a share ended because it left the sharing scope: why")


class RemoveFromListEffect(BaseModel):
    """The audience leaves ``account_id``'s list of audiences shared with it."""

    type: Literal["remove_from_list"]
    audience_id: str
    account_id: str
    reason: ReasonCode | None = Field(None, description="a share ended because it left the sharing scope: why")


class DisconnectAudienceEffect(BaseModel):
    """The audience leaves the targeting of a recipient's ad group."""

    type: Literal["disconnect_audience"]
    ad_group_id: str
    account_id: str
    audience_id: str
    before: Targeting
    after: Targeting
    no_audience_targeting: bool = Field(description="the ad group targets no audience any more (broadened)")
    reason: ReasonCode | None = Field(None, description="a share ended because it left the sharing scope: why")


class PauseAdGroupEffect(BaseModel):
    """The ad group lost its last included audience and is paused (the policy's choice)."""

    type: Literal["pause_ad_group"]
    ad_group_id: str
    account_id: str
    audience_id: str
    reason: ReasonCode | None = Field(None, description="a share ended because it left the sharing scope: why")


class PropagateUpdateEffect(BaseModel):
    """Every recipient sees the edited audience at once."""

    type: Literal["propagate_update"]
    audience_id: str
    account_ids: list[str]
    revision: int | None = Field(None, description="the new revision, once the edit is applied")
    part: int | None = Field(None, ge=1, description="with over 100 recipients the update is several effects"
                                                     " of at most 100 account ids: this one's number, from 1")
    parts: int | None = Field(None, ge=2, description="how many effects the chunked update is")


EFFECT_MODELS = (EndShareEffect, RemoveFromListEffect, DisconnectAudienceEffect, PauseAdGroupEffect,
                 PropagateUpdateEffect)
EFFECT_TYPES = tuple(m.model_fields["type"].annotation.__args__[0] for m in EFFECT_MODELS)


class OtherEffect(BaseModel):
    """An effect of a type not listed here (a newer service's): read it as a generic object."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"additionalProperties": True})
    type: str = Field(description="the effect's type, not one of the types listed",
                      json_schema_extra={"not": {"enum": list(EFFECT_TYPES)}})


KnownEffect = Annotated[EndShareEffect | RemoveFromListEffect | DisconnectAudienceEffect | PauseAdGroupEffect
                        | PropagateUpdateEffect, Field(discriminator="type")]
Effect = KnownEffect | OtherEffect


class DenyBody(BaseModel):
    """A policy deny of an action: nothing was changed but the decision log."""

    decision: Literal["deny"]
    reasons: list[Reason]
    policy_version: str
    decision_ids: list[str]


class Forbidden(RootModel[DenyBody | ErrorBody]):
    """A policy deny, or a token whose scope does not cover the endpoint."""


class EventSpan(BaseModel):
    first_id: int
    last_id: int
    count: int


class Summary(BaseModel):
    """What an answer with effects always carries, so that it can be cut to the response
    size limit (``truncated``) without losing what happened."""

    effect_counts: dict[str, int] = Field(default_factory=dict, description="effects by type")
    events: EventSpan | None = Field(None, description="the action's events in GET /v1/events"
                                                       " (after=first_id-1); null when it recorded none")
    truncated: list[str] = Field(default_factory=list,
                                 description="lists emptied to fit the response size limit")


class AuthorizeAnswer(Summary):
    decision: Literal["allow", "deny"]
    reasons: list[Reason]
    effects: list[Effect]
    policy_version: str
    decision_id: str | None = Field(description="null when the service failed closed")
    explanation: dict[str, Any] | None = Field(None, description="with explain: true, the matched line and the facts")


class ErrorOrDeny(RootModel[AuthorizeAnswer | ErrorBody]):
    """On /v1/authorize* a fault is still a deny (fail closed)."""


class BatchAnswer(BaseModel):
    results: list[AuthorizeAnswer]


class BusinessCenterView(Summary):
    id: str
    name: str
    cross_bc_allowlisted: bool
    effects: list[Effect] = Field(default_factory=list,
                                          description="shares ended because they left the sharing scope")


class AccountView(Summary):
    id: str
    name: str
    business_center_id: str | None
    terms_accepted_at: Timestamp
    effects: list[Effect] = Field(default_factory=list,
                                          description="shares ended because they left the sharing scope")


class AudienceView(BaseModel):
    id: str
    name: str
    type: Literal["custom", "lookalike"]
    source: Source | None
    seed_audience_id: str | None = Field(description="a lookalike's seed audience: shown to the owner only"
                                                     " (null for a recipient; docs/visibility.md)")
    owner_account_id: str
    status: Literal["active", "deleted"]
    member_count: int
    revision: int
    created_at: Timestamp
    updated_at: Timestamp
    deleted_at: Timestamp
    relation: Relation
    actions: list[MatrixAction] = Field(description="the actions the policy allows the acting account")


class AudienceList(BaseModel):
    account_id: str
    audiences: list[AudienceView]
    next_after: str | None = Field(description="the cursor of the next page (after=); null on the last page")


class AudienceResult(Summary):
    audience: AudienceView
    effects: list[Effect]


class DeleteResult(Summary):
    audience_id: str
    relation: Relation
    deleted: bool
    removed_from_list: bool
    effects: list[Effect]


class ShareResult(Summary):
    audience_id: str
    shared_with: list[str]
    recipients: list[str]
    effects: list[Effect]


class ShareEntry(BaseModel):
    account_id: str
    created_at: Timestamp
    created_by: str


class ShareList(BaseModel):
    audience_id: str
    shares: list[ShareEntry]
    next_after: str | None = Field(description="the cursor of the next page (after=); null on the last page")


class StopResult(Summary):
    audience_id: str
    stopped: list[str]
    effects: list[Effect]


class ShareLogEntry(BaseModel):
    id: int
    account_id: str | None
    action: Literal["share", "stop", "owner_delete", "recipient_remove", "scope_ended"]
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
    status: Literal["enabled", "paused"]
    include: list[str]
    exclude: list[str]
    no_audience_targeting: bool
    updated_at: Timestamp


class AdGroupResult(Summary):
    ad_group: AdGroupView
    created: bool
    effects: list[Effect]


# -- events: one schema per type, told apart by ``type`` (docs/events.md) ----------------

class BusinessCenterUpserted(BaseModel):
    type: Literal["business_center_upserted"]
    business_center_id: str
    name: str
    cross_bc_allowlisted: bool


class AccountUpserted(BaseModel):
    type: Literal["account_upserted"]
    account_id: str
    name: str
    business_center_id: str | None


class TermsAccepted(BaseModel):
    type: Literal["terms_accepted"]
    account_id: str


class AudienceCreated(BaseModel):
    type: Literal["audience_created"]
    audience_id: str
    account_id: str
    name: str
    audience_type: Literal["custom"]
    source: Source


class AudienceChanges(BaseModel):
    name: str | None = None
    member_count: int | None = None


class AudienceUpdated(BaseModel):
    type: Literal["audience_updated"]
    audience_id: str
    account_id: str
    revision: int
    changes: AudienceChanges


class LookalikeRefreshed(BaseModel):
    type: Literal["lookalike_refreshed"]
    audience_id: str
    account_id: str
    revision: int


class AudienceDeleted(BaseModel):
    type: Literal["audience_deleted"]
    audience_id: str
    account_id: str


class LookalikeCreated(BaseModel):
    type: Literal["lookalike_created"]
    audience_id: str
    account_id: str
    seed_audience_id: str
    name: str


class ShareCreated(BaseModel):
    type: Literal["share_created"]
    audience_id: str
    account_id: str = Field(description="the recipient")
    action: Literal["share"]
    actor: str


class AdGroupUpserted(BaseModel):
    type: Literal["ad_group_upserted"]
    ad_group_id: str
    account_id: str
    name: str
    include: list[str]
    exclude: list[str]
    created: bool


class ShareEnded(EndShareEffect):
    action: StopAction = Field(description="what ended it")
    actor: str = Field(description="the acting account, or the service for scope_ended")


EVENT_PAYLOADS = (BusinessCenterUpserted, AccountUpserted, TermsAccepted, AudienceCreated, AudienceUpdated,
                  LookalikeRefreshed, AudienceDeleted, LookalikeCreated, ShareCreated, AdGroupUpserted,
                  ShareEnded, RemoveFromListEffect, DisconnectAudienceEffect, PauseAdGroupEffect,
                  PropagateUpdateEffect)


def _event_type(payload: type[BaseModel]) -> str:
    return payload.model_fields["type"].annotation.__args__[0]


EVENT_TYPES = tuple(_event_type(p) for p in EVENT_PAYLOADS)
EventType = Literal[EVENT_TYPES]  # type: ignore[valid-type]


def _envelope(payload: type[BaseModel]) -> type[BaseModel]:
    kind = _event_type(payload)
    name = "".join(part.title() for part in kind.split("_")) + "Event"
    return create_model(name, __base__=_EventBase, __doc__=f"An event of type {kind}.",
                        type=(Literal[kind], ...), payload=(payload, ...))


class _EventBase(BaseModel):
    id: int = Field(description="the event's position in the feed (also the SSE id)")
    audience_id: str | None
    account_id: str | None
    decision_id: str | None = Field(description="the decision that caused it, when one did")
    at: Timestamp


EVENT_MODELS = tuple(_envelope(p) for p in EVENT_PAYLOADS)
KnownEventView = Annotated[Union[EVENT_MODELS], Field(discriminator="type")]  # type: ignore[valid-type]  # noqa: UP007 - a Union of a tuple made at run time


class OtherEvent(_EventBase):
    """An event of a type not listed here (a newer service's)."""

    type: str = Field(description="the event's type, not one of the types listed",
                      json_schema_extra={"not": {"enum": list(EVENT_TYPES)}})
    payload: dict[str, Any]


EventView = KnownEventView | OtherEvent


class EventPage(BaseModel):
    events: list[EventView]
    next_after: int = Field(description="the cursor of the next page: the last id here, or the given after")


class LatestEvent(BaseModel):
    id: int = Field(description="the newest event's id; 0 when there is none")


class DecisionView(BaseModel):
    id: int
    decision_id: str
    at: Timestamp
    principal: str
    action: str
    resource: dict[str, str]
    decision: Literal["allow", "deny"]
    reasons: list[Reason]
    policy_version: str
    relation: str
    rule_line: int | None
    request_id: str | None = Field(description="the X-Request-Id of the call that was decided (null without one)")
    trace_id: str | None = Field(None, description="the W3C trace id of the call, when it was traced (null otherwise;"
                                 " docs/operations.md, Tracing)")
    facts: dict = Field(default_factory=dict, description="the facts decided on: gathered, and sent by the caller")


class DecisionPage(BaseModel):
    decisions: list[DecisionView]
    next_after: int


class Health(BaseModel):
    status: str


# Every route may answer these; a route lists its own success answers (and 404, 409, ...).
class _Problem(BaseModel):
    file: str
    line: int
    message: str


class Readiness(BaseModel):
    status: Literal["ready", "not_ready", "draining", "saturated"]  # draining: told to stop, still serving
    database: str
    policy: str
    policy_version: str
    decisions: Literal["ok", "failing"] = Field(description="whether the policy in force decides what the service asks")
    capacity: Literal["ok", "saturated"] = Field(
        "ok", description="saturated: every decision thread of this worker is busy and requests wait for one")
    decision_errors: list[_Problem] | None = None  # with a valid token only
    pools: dict | None = Field(None, description="with a valid token only: each thread pool of this worker"
                               " (decisions, probes, feeds): threads, busy, queued")
    subscribers: dict | None = Field(None, description="with a valid token only: this worker's open streams and"
                                     " waiting long polls, and their bounds")
    analyses: dict | None = Field(None, description="with a valid token only: this worker's policy analyses running"
                                  " and queued, and their bounds")
    policy_reloads: dict | None = None  # with a valid token only
    last_reload_error: dict | None = None  # with a valid token only


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


class RetiredCode(BaseModel):
    code: str = Field(description="a reason code the serving policy gives that the candidate retires")
    replaced_by: str | None = Field(description="the code that replaces it; null: deprecated without one")


class DiffReport(BaseModel):
    """Decisions of the log replayed against a candidate policy, grouped by what changed."""

    retired_codes: list[RetiredCode] = Field(default_factory=list, description="listed first: the reason codes"
                                             " the candidate retires (callers matching on them must change)")
    replayed: int
    changed: int
    unchanged: int
    changes: list[dict[str, Any]]
    symbolic: dict[str, Any] | None = Field(None, description="with symbolic: the changed regions of requests,"
                                            " each a condition over facts, an example and the replayed count")


class ShadowSummary(BaseModel):
    """The shadow policy and its disagreements with the policy in force, by (action, from, to)."""

    active: bool
    policy_version: str
    shadow_version: str | None
    decisions: int | None = None
    failed: int | None = None
    disagreements: int | None = None
    by: list[dict[str, Any]] | None = None


COMMON = {400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 413: ErrorBody, 429: ErrorBody,
          500: ErrorBody, 503: ErrorBody,
          # answered by the HTTP server (gunicorn) before the request reaches the service
          414: {"description": "The request line is over the server's limit"},
          431: {"description": "A request header is over the server's limit"}}
ACTING = {403: Forbidden, 404: ErrorBody}  # routes that act for X-Account-Id: policy denies
AUTHORIZE = {422: ErrorBody, 500: ErrorOrDeny, 503: ErrorOrDeny}

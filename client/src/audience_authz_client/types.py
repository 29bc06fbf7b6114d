"""The service's vocabulary and answers as Python types.

The closed ``Literal`` types list names that the caller sends (actions, sources), so a typo
such as ``"aply"`` fails type-checking. The names the service answers with and may add to
(reason codes, which a policy author adds to ``policy/reasons.yaml``, effect and event
types) are plain ``str``: an answer naming one this client does not list is read as it is,
never refused. The ``KNOWN_...`` constants list those this client was written with (a test
of the server's repository checks that each is one the service has). The answers are frozen
dataclasses whose fields mirror the OpenAPI document's schemas (also checked by a test); an
answer may carry fields this client does not know (they are ignored), never fewer.
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Union

# The actions of POST /v1/authorize (an account on an audience).
Action = Literal["view", "edit", "apply", "delete", "share", "stop_sharing", "create_lookalike",
                 "refresh_lookalike", "view_shares"]

# The actions of the sharing matrix: what an audience view lists as allowed.
MatrixAction = Literal["view", "edit", "apply", "delete", "share", "stop_sharing", "create_lookalike",
                       "refresh_lookalike"]

# A deny reason code: one of the policy (policy/reasons.yaml: a policy author may add codes,
# never rename one), the service's own (no rule matched, a fault it failed closed on), or
# this client's own: ``unavailable`` (no usable answer) and ``rate_limited`` (429 past the
# call's deadline). Open: any string the service sends. The codes known when this client was
# written are ``KnownReasonCode`` / ``KNOWN_REASON_CODES``.
ReasonCode = str
KnownReasonCode = Literal[
    "unknown_principal", "unknown_audience", "audience_deleted", "no_access", "not_owner",
    "not_account_owner", "reshare_forbidden", "recipient_action_forbidden", "unknown_ad_group",
    "ad_group_not_owned", "applied_to_ad_groups", "audience_not_shareable",
    "account_not_in_business_center", "terms_not_accepted", "unknown_target_account", "share_to_self",
    "not_same_business_center", "already_shared", "not_shared", "seed_not_custom", "not_lookalike",
    "seed_deleted", "not_in_account_business_center", "not_in_business_center",
    "no_matching_rule", "internal_error", "database_unavailable", "response_too_large",
    "unavailable", "rate_limited",
]
KNOWN_REASON_CODES: tuple[str, ...] = typing.get_args(KnownReasonCode)
CLIENT_REASONS: tuple[ReasonCode, ...] = ("unavailable", "rate_limited")

DecisionValue = Literal["allow", "deny"]
Source = Literal["engagement", "app_activity", "website_traffic", "customer_file", "partner",
                 "lead_generation", "shop_activity"]
Relation = Literal["owner", "recipient", "none"]
MembersOp = Literal["add", "remove", "replace"]
# Effect and event types: open (a newer service may add one); the known ones below.
EffectType = str
KnownEffectType = Literal["end_share", "remove_from_list", "disconnect_audience", "pause_ad_group",
                          "propagate_update"]
EventType = str
KnownEventType = Literal[
    "business_center_upserted", "account_upserted", "terms_accepted", "audience_created",
    "audience_updated", "lookalike_refreshed", "audience_deleted", "lookalike_created", "share_created",
    "ad_group_upserted", "end_share", "remove_from_list", "disconnect_audience", "pause_ad_group",
    "propagate_update",
]
KNOWN_EVENT_TYPES: tuple[str, ...] = typing.get_args(KnownEventType)


# -- decisions -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Reason:
    """Why a decision denied. ``code`` is stable; a newer service may send a code this
    client does not list (it is passed through, and is still a deny)."""

    code: ReasonCode
    message: str = ""
    account_id: str | None = None  # the target account the reason is about
    ad_group_ids: tuple[str, ...] | None = None  # applied_to_ad_groups: the ad groups in the way
    audience_id: str | None = None  # an ad group upsert: the audience refused
    more_ad_groups: bool = False  # applied_to_ad_groups: more are in the way than ad_group_ids names (100)


@dataclass(frozen=True)
class Targeting:
    include: tuple[str, ...]
    exclude: tuple[str, ...]


@dataclass(frozen=True)
class EndShare:
    type: Literal["end_share"]
    audience_id: str
    account_id: str
    reason: ReasonCode | None = None  # a share ended because it left the sharing scope: why


@dataclass(frozen=True)
class RemoveFromList:
    type: Literal["remove_from_list"]
    audience_id: str
    account_id: str
    reason: ReasonCode | None = None  # a share ended because it left the sharing scope: why


@dataclass(frozen=True)
class DisconnectAudience:
    type: Literal["disconnect_audience"]
    ad_group_id: str
    account_id: str
    audience_id: str
    before: Targeting
    after: Targeting
    no_audience_targeting: bool
    reason: ReasonCode | None = None  # a share ended because it left the sharing scope: why


@dataclass(frozen=True)
class PauseAdGroup:
    type: Literal["pause_ad_group"]
    ad_group_id: str
    account_id: str
    audience_id: str
    reason: ReasonCode | None = None  # a share ended because it left the sharing scope: why


@dataclass(frozen=True)
class PropagateUpdate:
    type: Literal["propagate_update"]
    audience_id: str
    account_ids: tuple[str, ...]
    revision: int | None = None  # set once the edit is applied
    # Over 100 recipients, an update is several effects (and events) of at most 100 account
    # ids each: ``part`` of ``parts`` (both None when it is one).
    part: int | None = None
    parts: int | None = None


@dataclass(frozen=True)
class OtherEffect:
    """An effect of a type this client does not know (a newer service's): its ``type`` and
    every field of it as sent. The action was carried out; the effect is reported, not refused."""

    type: EffectType
    fields: dict[str, Any] = field(default_factory=dict)


# An effect of an allowed action, told apart by ``type``; one of a type this client does
# not know is an ``OtherEffect`` (the allow stands: it is the service's decision).
Effect = EndShare | RemoveFromList | DisconnectAudience | PauseAdGroup | PropagateUpdate | OtherEffect
EFFECT_CLASSES: dict[str, type] = {
    "end_share": EndShare, "remove_from_list": RemoveFromList, "disconnect_audience": DisconnectAudience,
    "pause_ad_group": PauseAdGroup, "propagate_update": PropagateUpdate,
}


@dataclass(frozen=True)
class EventSpan:
    """The events an action recorded: ids ``first_id`` to ``last_id`` of the event feed
    (``events(after=first_id - 1)`` reads them), ``count`` of them."""

    first_id: int
    last_id: int
    count: int


# What every answer with effects carries besides them (the server's ``Summary``): it stays
# true when the service empties a long list to fit its response size limit.
#   effect_counts  the effects by type, all of them (also those cut from ``effects``)
#   events         the action's events in the feed, None when it recorded none
#   truncated      the names of the lists emptied to fit the limit (e.g. "effects")


@dataclass(frozen=True)
class Decision:
    """The answer of ``authorize``. ``allowed`` is True only for a well-formed ``allow``."""

    decision: DecisionValue
    reasons: tuple[Reason, ...] = ()
    effects: tuple[Effect, ...] = ()
    policy_version: str | None = None
    decision_id: str | None = None  # None when the service (or this client) failed closed
    explanation: dict[str, Any] | None = None  # with explain=True: the matched line and the facts
    effect_counts: dict[str, int] = field(default_factory=dict)
    events: EventSpan | None = None
    truncated: tuple[str, ...] = ()
    request_id: str | None = field(default=None, metadata={"client": True})
    error: str | None = field(default=None, metadata={"client": True})  # why this client failed closed

    @property
    def allowed(self) -> bool:
        return self.decision == "allow"

    @property
    def codes(self) -> list[ReasonCode]:
        return [r.code for r in self.reasons]


@dataclass(frozen=True)
class Check:
    """One question for ``authorize_many``."""

    account_id: str
    action: Action
    audience_id: str
    target_account_id: str | None = None
    ad_group_id: str | None = None

    def body(self) -> dict[str, Any]:
        context = {k: v for k, v in (("target_account_id", self.target_account_id),
                                     ("ad_group_id", self.ad_group_id)) if v is not None}
        return {"principal": {"account_id": self.account_id}, "action": self.action,
                "resource": {"audience_id": self.audience_id}, "context": context}


@dataclass(frozen=True)
class Denied:
    """The policy refused an action (HTTP 403): nothing was changed but the decision log.
    An answer, not an exception: the action calls return ``Result | Denied``."""

    decision: Literal["deny"]
    reasons: tuple[Reason, ...]
    policy_version: str
    decision_ids: tuple[str, ...]
    request_id: str | None = field(default=None, metadata={"client": True})

    @property
    def allowed(self) -> bool:
        return False

    @property
    def codes(self) -> list[ReasonCode]:
        return [r.code for r in self.reasons]


# -- entities ------------------------------------------------------------------------------

@dataclass(frozen=True)
class BusinessCenter:
    id: str
    name: str
    cross_bc_allowlisted: bool
    effects: tuple[Effect, ...] = ()  # shares ended because they left the sharing scope
    effect_counts: dict[str, int] = field(default_factory=dict)
    events: EventSpan | None = None
    truncated: tuple[str, ...] = ()


@dataclass(frozen=True)
class Account:
    id: str
    name: str
    business_center_id: str | None
    terms_accepted_at: str | None
    effects: tuple[Effect, ...] = ()  # shares ended because they left the sharing scope
    effect_counts: dict[str, int] = field(default_factory=dict)
    events: EventSpan | None = None
    truncated: tuple[str, ...] = ()


@dataclass(frozen=True)
class Audience:
    id: str
    name: str
    type: Literal["custom", "lookalike"]
    source: Source | None
    seed_audience_id: str | None
    owner_account_id: str
    status: Literal["active", "deleted"]
    member_count: int
    revision: int
    created_at: str | None
    updated_at: str | None
    deleted_at: str | None
    relation: Relation
    actions: tuple[MatrixAction, ...]


@dataclass(frozen=True)
class AudienceList:
    """One page, by audience id; ``next_after`` is the ``after=`` of the next page, None on
    the last. A page may hold fewer than ``limit`` audiences and still not be the last."""

    account_id: str
    audiences: tuple[Audience, ...]
    next_after: str | None


@dataclass(frozen=True)
class AudienceResult:
    audience: Audience
    effects: tuple[Effect, ...]
    effect_counts: dict[str, int] = field(default_factory=dict)
    events: EventSpan | None = None
    truncated: tuple[str, ...] = ()


@dataclass(frozen=True)
class DeleteResult:
    audience_id: str
    relation: Relation
    deleted: bool
    removed_from_list: bool
    effects: tuple[Effect, ...]
    effect_counts: dict[str, int] = field(default_factory=dict)
    events: EventSpan | None = None
    truncated: tuple[str, ...] = ()


@dataclass(frozen=True)
class ShareResult:
    audience_id: str
    shared_with: tuple[str, ...]
    recipients: tuple[str, ...]
    effects: tuple[Effect, ...]
    effect_counts: dict[str, int] = field(default_factory=dict)
    events: EventSpan | None = None
    truncated: tuple[str, ...] = ()


@dataclass(frozen=True)
class ShareEntry:
    account_id: str
    created_at: str | None
    created_by: str


@dataclass(frozen=True)
class ShareList:
    """One page, by recipient account id; ``next_after`` is the ``after=`` of the next
    page, None on the last."""

    audience_id: str
    shares: tuple[ShareEntry, ...]
    next_after: str | None


@dataclass(frozen=True)
class StopResult:
    audience_id: str
    stopped: tuple[str, ...]
    effects: tuple[Effect, ...]
    effect_counts: dict[str, int] = field(default_factory=dict)
    events: EventSpan | None = None
    truncated: tuple[str, ...] = ()


@dataclass(frozen=True)
class ShareLogEntry:
    id: int
    account_id: str | None
    action: str
    actor: str
    at: str | None


@dataclass(frozen=True)
class ShareLog:
    audience_id: str
    entries: tuple[ShareLogEntry, ...]
    next_after: int | None


@dataclass(frozen=True)
class AdGroup:
    id: str
    account_id: str
    name: str
    status: Literal["enabled", "paused"]
    include: tuple[str, ...]
    exclude: tuple[str, ...]
    no_audience_targeting: bool
    updated_at: str | None


@dataclass(frozen=True)
class AdGroupResult:
    ad_group: AdGroup
    created: bool
    effects: tuple[Effect, ...]
    effect_counts: dict[str, int] = field(default_factory=dict)
    events: EventSpan | None = None
    truncated: tuple[str, ...] = ()


# -- feeds ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Event:
    """One entry of the event feed; ``payload`` per type is described in docs/events.md."""

    id: int
    type: EventType
    audience_id: str | None
    account_id: str | None
    decision_id: str | None
    at: str | None
    payload: dict[str, Any]


@dataclass(frozen=True)
class EventPage:
    events: tuple[Event, ...]
    next_after: int


@dataclass(frozen=True)
class DecisionEntry:
    id: int
    decision_id: str
    principal: str
    action: str
    decision: DecisionValue
    policy_version: str
    at: str | None = None
    resource: dict[str, Any] = field(default_factory=dict)
    reasons: tuple[Reason, ...] = ()
    relation: str | None = None
    rule_line: int | None = None
    request_id: str | None = None  # the X-Request-Id of the call that was decided
    trace_id: str | None = None  # the W3C trace id of the call, when the service traced it
    facts: dict[str, Any] = field(default_factory=dict)  # decided on: gathered, and sent by the caller


@dataclass(frozen=True)
class DecisionPage:
    decisions: tuple[DecisionEntry, ...]
    next_after: int


# -- reading answers -----------------------------------------------------------------------

T = typing.TypeVar("T")
_PASS_THROUGH = (MatrixAction,)  # a newer service may add names to these


def parse(cls: type[T], data: object, **extra: Any) -> T:
    """``data`` (decoded JSON) as ``cls``, or ValueError naming the first field in error.
    Unknown keys are ignored; ``extra`` sets client-side fields (request_id, ...)."""
    value: T = _convert(cls, data, cls.__name__)
    return dataclasses.replace(value, **extra) if extra else value  # type: ignore[type-var]


def _convert(tp: Any, value: object, where: str) -> Any:
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _dataclass(tp, value, where)
    origin = typing.get_origin(tp)
    if origin is Literal:
        if tp in _PASS_THROUGH:
            if not isinstance(value, str):
                raise ValueError(f"{where}: not a string")
            return value
        if value not in typing.get_args(tp):
            raise ValueError(f"{where}: {value!r} is not one of {typing.get_args(tp)}")
        return value
    if origin in (Union, getattr(types, "UnionType", Union)):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        if tp == Effect:
            if not isinstance(value, dict) or not isinstance(value.get("type"), str):
                raise ValueError(f"{where}: an effect needs a type")
            kind = value["type"]
            if kind not in EFFECT_CLASSES:
                return OtherEffect(type=kind, fields=dict(value))
            return _dataclass(EFFECT_CLASSES[kind], value, where)
        options = [a for a in args if a is not type(None)]
        if len(options) != 1:
            raise TypeError(f"{where}: cannot read the union {tp}")
        return _convert(options[0], value, where)
    if origin is tuple:
        if not isinstance(value, list):
            raise ValueError(f"{where}: not a list")
        item = typing.get_args(tp)[0]
        return tuple(_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{where}: not an object")
        item = typing.get_args(tp)[1]
        return value if item is Any else {k: _convert(item, v, f"{where}[{k!r}]") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where}: not a boolean")
        return value
    if tp is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{where}: not an integer")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"{where}: not a string")
        return value
    raise TypeError(f"{where}: no reader for {tp}")


_HINTS: dict[type, dict[str, Any]] = {}


def _dataclass(cls: type, value: object, where: str) -> Any:
    if not isinstance(value, dict):
        raise ValueError(f"{where}: not an object")
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls, vars(sys.modules[cls.__module__]))
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.metadata.get("client"):
            continue
        if f.name in value:
            kwargs[f.name] = _convert(hints[f.name], value[f.name], f"{where}.{f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ValueError(f"{where}: {f.name} is missing")
    return cls(**kwargs)

"""Request bodies, paths and queries of the HTTP API (pydantic; they also make /openapi.json).

Every model forbids unknown fields and uses strict types: "1" is not a number, 0 is not
false. Validation failures become 400 ``{"error": {...}}`` in ``errors.py``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from audience_authz import actions
from audience_authz.http.responses import EventType
from audience_authz.vocabulary import AUDIENCE_ACTIONS, MATRIX_ACTIONS, MAX_MEMBERS, SOURCES

MAX_WAIT_S = 25  # the longest long poll: within gunicorn's and most proxies' idle timeouts

Id = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=128,
                                       pattern=r"^[A-Za-z0-9_.:\-]+$")]


def _storable(value: str) -> str:
    """Text both databases can store: PostgreSQL refuses NUL, and a lone surrogate (which
    JSON can spell as \\ud800) is not UTF-8."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be Unicode text without lone surrogates") from None
    return value


Name = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=256, pattern=r"^[^\x00]+$"),
                 AfterValidator(_storable)]
# The five shareable sources of the source text, and others the platform also has (which
# the policy refuses to share).
Source = Literal[SOURCES]  # type: ignore[valid-type]
AudienceAction = Literal[AUDIENCE_ACTIONS]  # type: ignore[valid-type]
MatrixAction = Literal[MATRIX_ACTIONS]  # type: ignore[valid-type]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# -- paths and queries --------------------------------------------------------------------

def digits(value):
    """Query text is a number only as plain ASCII digits (lax parsing would also take
    " 5", "+5", "5.0" and "5_0", which the document's integer does not allow)."""
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        raise ValueError("must be a whole number written in digits")
    return value


class IdPath(Strict):
    id: Id


class ShareTargetPath(Strict):
    id: Id
    account_id: Id



class Page(BaseModel):
    model_config = ConfigDict(extra="forbid")
    after: int = Field(0, ge=0, le=2**63 - 1, description="return entries with an id greater than this")
    limit: int = Field(100, ge=1, le=1000)

    @field_validator("after", "limit", mode="before")
    @classmethod
    def _plain_digits(cls, value):
        return digits(value)


MAX_PAGE = 1000


class IdPage(BaseModel):
    """A page of a list ordered by id: the entries after the cursor ``after`` (the
    ``next_after`` of the previous page), at most ``limit`` of them."""

    model_config = ConfigDict(extra="forbid")
    after: Id | None = Field(None, description="the next_after of the previous page; none for the first")
    limit: int = Field(100, ge=1, le=MAX_PAGE)

    _digits = field_validator("limit", mode="before")(digits)


class AudienceListQuery(IdPage):
    """A page of an account's audience list, optionally only those the policy allows one
    action on (e.g. ``apply``: what the account may put in its ad groups)."""

    action: MatrixAction | None = Field(
        None, description="only the audiences on which the policy allows the account this action; a page may then"
                          " hold fewer than limit (each page looks at limit audiences): follow next_after")


class EventFilter(BaseModel):
    """Which events: all of them, or those of one account, one audience, some types."""

    model_config = ConfigDict(extra="forbid")
    account_id: Id | None = Field(None, description="only events whose account_id is this")
    audience_id: Id | None = Field(None, description="only events whose audience_id is this")
    type: list[EventType] = Field(default_factory=list, description="only these types (repeat the parameter)")


class DecisionQuery(Page):
    request_id: Id | None = Field(None, description="only the decisions made while serving the request with this"
                                  " X-Request-Id")


class DecisionIdPath(Strict):
    decision_id: Annotated[str, StringConstraints(strict=True, pattern=r"^[0-9a-f]{32}$")] = Field(
        description="a decision id as answered: 32 lowercase hex digits")


class EventQuery(Page, EventFilter):
    wait: int = Field(0, ge=0, le=MAX_WAIT_S, description="long poll: when no event is there yet, wait up to"
                      " this many seconds for one before answering an empty page")

    @field_validator("wait", mode="before")
    @classmethod
    def _wait_digits(cls, value):
        return digits(value)


class StreamQuery(EventFilter):
    after: int | None = Field(None, ge=0, le=2**63 - 1, description="start after this event id (default: the"
                              " newest, i.e. only new events); a Last-Event-ID header takes precedence")

    @field_validator("after", mode="before")
    @classmethod
    def _after_digits(cls, value):
        return digits(value)


class StreamHeaders(BaseModel):
    """``Last-Event-ID``: sent by an EventSource when it reconnects; the stream resumes after it."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    last_event_id: str | None = Field(None, alias="Last-Event-ID", pattern=r"^[0-9]{1,19}$")

    @field_validator("last_event_id")
    @classmethod
    def _an_event_id(cls, value):
        if value is not None and int(value) > 2**63 - 1:  # 19 digits reach past a 64-bit row id
            raise ValueError(f"must be at most {2**63 - 1}")
        return value


class ActingAccount(BaseModel):
    """The ``X-Account-Id`` header: the ad account on whose behalf the call acts."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    x_account_id: Id = Field(alias="X-Account-Id")
    x_authz_context: str | None = Field(
        None, alias="X-Authz-Context", max_length=4096,
        description="facts the caller supplies to the policy (facts.yaml `source: context`), as a JSON object,"
                    ' e.g. {"principal_suspended": true}; used by every decision of the request')


# -- bodies -------------------------------------------------------------------------------

class BusinessCenterBody(Strict):
    name: Name
    cross_bc_allowlisted: bool = Field(False, description=(
        "may its accounts share with accounts of other Business Centers. Left out: an existing"
        " Business Center keeps its stored value (a new one starts false), so a narrowing of the"
        " sharing scope never happens by omission"))

    def allowlisting(self):
        """The value to store: the one given, or ``actions.KEEP`` when left out."""
        return self.cross_bc_allowlisted if "cross_bc_allowlisted" in self.model_fields_set else actions.KEEP


class AccountBody(Strict):
    name: Name
    business_center_id: Id | None = Field(None, description=(
        "the Business Center that owns the account; null: none (the account leaves its Business"
        " Center, ending shares out of scope). Left out: an existing account stays where it is (a"
        " new one has none), so a move never happens by omission"))

    def business_center(self):
        """The value to store: the one given (null too), or ``actions.KEEP`` when left out."""
        return self.business_center_id if "business_center_id" in self.model_fields_set else actions.KEEP


class AudienceCreateBody(Strict):
    id: Id | None = None
    name: Name
    source: Source
    member_count: int = Field(0, ge=0, le=MAX_MEMBERS)


class MembersChange(Strict):
    op: Literal["add", "remove", "replace"]
    count: int = Field(ge=0, le=MAX_MEMBERS, description="counts saturate at 0 and at the maximum")


class AudiencePatchBody(Strict):
    name: Name | None = None
    members: MembersChange | None = None


class ShareBody(Strict):
    account_ids: list[Id] = Field(min_length=1, max_length=100, json_schema_extra={"uniqueItems": True})

    @field_validator("account_ids")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("account_ids must not repeat an account")
        return value


class LookalikeBody(Strict):
    id: Id | None = None
    name: Name


class AdGroupBody(Strict):
    name: Name
    include: list[Id] = Field(default_factory=list, max_length=100, json_schema_extra={"uniqueItems": True})
    exclude: list[Id] = Field(default_factory=list, max_length=100, json_schema_extra={"uniqueItems": True})
    status: Literal["enabled", "paused"] | None = Field(None, description=(
        "enabled or paused; left out (or null): the stored status stays (enabled when new). Setting a"
        " paused ad group (e.g. one paused by the disconnect_audience:pause policy choice) back to"
        " enabled is the policy's resume_ad_group decision"))

    @model_validator(mode="after")
    def _each_audience_once(self) -> AdGroupBody:
        listed = [*self.include, *self.exclude]
        if len(set(listed)) != len(listed):
            raise ValueError("an audience may appear once, in include or in exclude")
        return self


class Principal(Strict):
    account_id: Id


class Resource(Strict):
    audience_id: Id


class Context(Strict):
    target_account_id: Id | None = None
    ad_group_id: Id | None = None
    facts: dict[str, Any] = Field(
        default_factory=dict, max_length=64,
        description="facts the caller supplies to the policy (facts.yaml `source: context`):"
                    " name -> true/false, whole number or string, as facts.yaml types them")


class AuthorizeBody(Strict):
    principal: Principal
    action: AudienceAction
    resource: Resource
    context: Context = Field(default_factory=Context)
    explain: bool = Field(False, description="add the matched policy line and the facts used")
    include_effects: bool = Field(True, description="false: the decision only; no effects are planned (effects []"
                                  " and effect_counts {}), and the check costs one unit of the request's cost cap")


class BatchBody(Strict):
    checks: list[AuthorizeBody] = Field(min_length=1, max_length=1000)

"""The steps every action is made of: decide (an audience the account cannot see is a 404,
as an unknown one), refuse all or nothing, record an event."""

from __future__ import annotations

from audience_authz.contract import AD_GROUP_NOT_OWNED, NO_ACCESS, UNKNOWN_AD_GROUP, UNKNOWN_AUDIENCE
from audience_authz.engine.authorizer import Authorizer, Outcome
from audience_authz.engine.facts import Request
from audience_authz.exceptions import Denied, NotFound
from audience_authz.store import effects as fx


def record_event(type_: str, outcome: Outcome | None = None, **payload) -> None:
    fx.record([dict(type=type_, **payload)], decision_id=outcome.decision_id if outcome else None)



def denied_if_any(outcomes: list[Outcome]) -> Denied | None:
    refused = [o for o in outcomes if not o.allowed]
    return Denied(refused) if refused else None



def decide_visible(authz: Authorizer, principal: str, audience_id: str, action: str,
             target_account_id: str | None = None) -> Outcome:
    """The decision on ``action``; an audience the account cannot see (unknown, or no relation)
    is a 404, the same answer either way (also when a permissive policy allows the action on
    an audience the store does not know: there is nothing to carry it out on)."""
    outcome = authz.check(Request(principal, action, audience_id, target_account_id=target_account_id))
    raise_if_not_visible(outcome, "audience", audience_id)
    if outcome.allowed and outcome.gathered.owner_account_id is None:
        raise NotFound("audience", audience_id)
    return outcome


def not_visible(outcome: Outcome, kind: str) -> bool:
    """The deny says the account has no relation to the ``kind`` it named
    (contract.NOT_VISIBLE_REASONS, compared one by one so the contract test sees each)."""
    if outcome.allowed:
        return False
    if kind == "audience":
        return outcome.decision.reason == UNKNOWN_AUDIENCE or outcome.decision.reason == NO_ACCESS
    return outcome.decision.reason == UNKNOWN_AD_GROUP or outcome.decision.reason == AD_GROUP_NOT_OWNED


def raise_if_not_visible(outcome: Outcome, kind: str, id_: str) -> None:
    if not_visible(outcome, kind):
        raise NotFound(kind, id_)


def as_unknown_audience(authz: Authorizer, outcome: Outcome) -> None:
    """A refused audience the account cannot see, listed in a deny body: named as unknown,
    the same whether it exists or not."""
    if not_visible(outcome, "audience"):
        outcome.reasons[0].update(code=UNKNOWN_AUDIENCE, message=authz.policy.message(UNKNOWN_AUDIENCE))

"""The steps every action is made of: decide (an unknown audience is a 404), refuse all or
nothing, record an event."""

from __future__ import annotations

from audience_authz.contract import UNKNOWN_AUDIENCE
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
    """The decision on ``action``; an audience id the store does not know is a 404 (also when
    a permissive policy allows the action: there is nothing to carry it out on)."""
    outcome = authz.check(Request(principal, action, audience_id, target_account_id=target_account_id))
    if outcome.decision.reason == UNKNOWN_AUDIENCE or (outcome.allowed and outcome.gathered.owner_account_id is None):
        raise NotFound("audience", audience_id)
    return outcome

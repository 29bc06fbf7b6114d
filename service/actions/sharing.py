"""Sharing an audience, stopping it, and its recipients and history."""

from __future__ import annotations

import json

from audience_authz.actions import preconditions
from audience_authz.actions import sharing_scope as scope
from audience_authz.actions.steps import decide_visible, denied_if_any, record_event
from audience_authz.actions.views import iso
from audience_authz.engine.authorizer import Authorizer
from audience_authz.exceptions import Denied
from audience_authz.store import effects as fx
from audience_authz.store.locks import lock_audiences
from audience_authz.store.models import Audience, Event, Share, utcnow
from audience_authz.store.transactions import run


def share(authz: Authorizer, principal: str, audience_id: str, account_ids: list[str]) -> dict:
    def work():
        lock_audiences([audience_id])
        owner = Audience.select(Audience.owner_account).where(Audience.id == audience_id).scalar()
        if owner is not None:
            scope.lock_scope_rows(owner, account_ids)
        outcomes = [decide_visible(authz, principal, audience_id, "share", target) for target in account_ids]
        denied = denied_if_any(outcomes)
        if denied:
            return denied
        preconditions.shareable(audience_id, account_ids)
        now = utcnow()
        Share.insert_many([{"audience": audience_id, "recipient_account": target, "status": "active",
                            "created_at": now, "created_by": principal} for target in account_ids]).execute()
        for outcome, target in zip(outcomes, account_ids):
            record_event("share_created", outcome, audience_id=audience_id, account_id=target,
                   action="share", actor=principal)
        return {"audience_id": audience_id, "shared_with": account_ids,
                "recipients": fx.active_recipients(audience_id, None), "effects": []}
    return run(work)



def list_shares(authz: Authorizer, principal: str, audience_id: str, after: str | None = None,
                limit: int = 100) -> dict:
    """One page of the active recipients, by account id after the cursor ``after``."""
    def work():
        outcome = decide_visible(authz, principal, audience_id, "view_shares")
        if not outcome.allowed:
            return Denied([outcome])
        shares = list(Share.select().where((Share.audience == audience_id) & (Share.status == "active")
                                           & (Share.recipient_account > (after or "")))
                      .order_by(Share.recipient_account).limit(limit + 1))
        page = shares[:limit]
        return {"audience_id": audience_id, "shares": [
            {"account_id": s.recipient_account_id, "created_at": iso(s.created_at),
             "created_by": s.created_by} for s in page],
            "next_after": page[-1].recipient_account_id if len(shares) > limit else None}
    return run(work, snapshot=True)



def stop_sharing(authz: Authorizer, principal: str, audience_id: str, account_id: str | None) -> dict:
    def work():
        lock_audiences([audience_id])
        outcome = decide_visible(authz, principal, audience_id, "stop_sharing", account_id)
        if not outcome.allowed:
            return Denied([outcome])
        fx.apply(outcome.effects, actor=principal, stop_action="stop", decision_id=outcome.decision_id)
        return {"audience_id": audience_id, "stopped": [e["account_id"] for e in outcome.effects
                                                        if e["type"] == "end_share"],
                "effects": outcome.effects}
    return run(work)



def share_log(authz: Authorizer, principal: str, audience_id: str, after: int, limit: int) -> dict:
    def work():
        outcome = decide_visible(authz, principal, audience_id, "view_shares")
        if not outcome.allowed:
            return Denied([outcome])
        events = (Event.select().where((Event.audience_id == audience_id) & (Event.id > after)
                                       & Event.type.in_(["share_created", "end_share"]))
                  .order_by(Event.id).limit(limit))
        entries = []
        for event in events:
            payload = json.loads(event.payload)
            entries.append({"id": event.id, "account_id": event.account_id, "action": payload["action"],
                            "actor": payload["actor"], "at": iso(event.at)})
        return {"audience_id": audience_id, "entries": entries,
                "next_after": entries[-1]["id"] if len(entries) == limit else None}
    return run(work, snapshot=True)

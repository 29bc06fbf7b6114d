"""The feeds other services read: applied events and the decision log, in order."""

from __future__ import annotations

import json

from audience_authz.actions.views import iso
from audience_authz.store.models import DecisionLog, Event


def events(after: int, limit: int) -> dict:
    rows = Event.select().where(Event.id > after).order_by(Event.id).limit(limit)
    items = [{"id": e.id, "type": e.type, "audience_id": e.audience_id, "account_id": e.account_id,
              "decision_id": e.decision_id, "at": iso(e.at), "payload": json.loads(e.payload)} for e in rows]
    return {"events": items, "next_after": items[-1]["id"] if items else after}



def decisions(after: int, limit: int) -> dict:
    rows = DecisionLog.select().where(DecisionLog.id > after).order_by(DecisionLog.id).limit(limit)
    items = [{"id": d.id, "decision_id": d.decision_id, "at": iso(d.at), "principal": d.principal,
              "action": d.action, "resource": json.loads(d.resource), "decision": d.decision,
              "reasons": json.loads(d.reasons), "policy_version": d.policy_version,
              "relation": d.relation, "rule_line": d.rule_line,
              "facts": json.loads(d.facts) if d.facts else {}} for d in rows]
    return {"decisions": items, "next_after": items[-1]["id"] if items else after}

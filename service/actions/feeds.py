"""The feeds other services read: applied events and the decision log, in order.

Event ids are assigned in commit order (store/locks.lock_event_feed), so a reader that
remembers the last id it handled and asks for what comes after misses nothing and sees
nothing twice. A filtered page that is not full has looked at every event up to the newest
one read before it, so its cursor moves there: a filter that matches rarely never makes a
reader scan the same events again.
"""

from __future__ import annotations

import json

from peewee import fn

from audience_authz.actions.views import iso
from audience_authz.exceptions import ApiError, NotFound
from audience_authz.store.locks import decision_log_high_water
from audience_authz.store.models import DecisionLog, Event


def latest_event_id() -> int:
    """The newest event's id; 0 when there is none."""
    return Event.select(fn.MAX(Event.id)).scalar() or 0


def events(after: int, limit: int, *, account_id: str | None = None, audience_id: str | None = None,
           types: tuple[str, ...] = ()) -> dict:
    """Events with an id above ``after``, oldest first, matching every filter given.
    A cursor above the newest id is an error (it would wait for ever), not an empty page."""
    latest = latest_event_id()
    if after > latest:
        raise ApiError(400, "cursor_past_end",
                       f"after={after} is past the newest event ({latest}); start from {latest} or less")
    query = Event.select().where((Event.id > after) & (Event.id <= latest))
    if account_id is not None:
        query = query.where(Event.account_id == account_id)
    if audience_id is not None:
        query = query.where(Event.audience_id == audience_id)
    if types:
        query = query.where(Event.type.in_(list(types)))
    items = [event_view(e) for e in query.order_by(Event.id).limit(limit)]
    full = len(items) == limit
    return {"events": items, "next_after": items[-1]["id"] if full else latest}


def event_view(e: Event) -> dict:
    return {"id": e.id, "type": e.type, "audience_id": e.audience_id, "account_id": e.account_id,
            "decision_id": e.decision_id, "at": iso(e.at), "payload": json.loads(e.payload)}


def decisions(after: int, limit: int, *, request_id: str | None = None) -> dict:
    """Decision-log rows with an id above ``after``, oldest first (only those of the request
    ``request_id`` when given), up to the high-water mark below which no row can still
    commit (store/locks.decision_log_high_water), so a reader paging by id never passes a
    row that commits later."""
    query = DecisionLog.select().where(DecisionLog.id > after)
    if request_id is not None:
        query = query.where(DecisionLog.request_id == request_id)
    settled = decision_log_high_water()
    if settled is not None:
        query = query.where(DecisionLog.id <= settled)
    items = [decision_view(d) for d in query.order_by(DecisionLog.id).limit(limit)]
    return {"decisions": items, "next_after": items[-1]["id"] if items else after}


def decision(decision_id: str) -> dict:
    """One decision by the id its answer carried; 404 while it is not stored (a batched
    row of another process is written within a few flush intervals)."""
    row = DecisionLog.get_or_none(DecisionLog.decision_id == decision_id)
    if row is None:
        raise NotFound("decision", decision_id)
    return decision_view(row)


def decision_view(d: DecisionLog) -> dict:
    return {"id": d.id, "decision_id": d.decision_id, "at": iso(d.at), "principal": d.principal,
            "action": d.action, "resource": json.loads(d.resource), "decision": d.decision,
            "reasons": json.loads(d.reasons), "policy_version": d.policy_version,
            "relation": d.relation, "rule_line": d.rule_line, "request_id": d.request_id,
            "trace_id": d.trace_id, "facts": json.loads(d.facts) if d.facts else {}}

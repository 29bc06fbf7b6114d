"""Audiences: read, list, create, edit, delete, and lookalikes made from them."""

from __future__ import annotations

import uuid

from audience_authz.actions import preconditions
from audience_authz.actions.steps import decide_visible, record_event
from audience_authz.actions.views import allowed_actions, audience_view
from audience_authz.engine.authorizer import Authorizer, Outcome
from audience_authz.engine.facts import Request, gather_listed
from audience_authz.exceptions import ApiError, Denied, NotFound
from audience_authz.store import effects as fx
from audience_authz.store.locks import lock_audiences
from audience_authz.store.models import Account, Audience, utcnow
from audience_authz.store.transactions import run
from audience_authz.vocabulary import bounded_members


def get_audience(authz: Authorizer, principal: str, audience_id: str) -> dict:
    def work():
        outcome = decide_visible(authz, principal, audience_id, "view")
        if not outcome.allowed:
            return Denied([outcome])
        gathered = authz.check(Request(principal, "delete", audience_id), log=False,
                               plan_effects=False).gathered
        return audience_view(Audience.get_by_id(audience_id), outcome.gathered.relation,
                             allowed_actions(authz, gathered))
    return run(work, snapshot=True)



def list_audiences(authz: Authorizer, principal: str, account_id: str, after: str | None = None,
                   limit: int = 100, action: str | None = None) -> dict:
    """One page of the account's list, by audience id after the cursor ``after``;
    ``next_after`` is the cursor of the next page (None on the last). With ``action``, only
    the audiences the policy allows it on: the page still looks at ``limit`` audiences (the
    work of a request stays bounded however rare the action), so it may hold fewer."""
    def work():
        if not Account.select().where(Account.id == account_id).exists():
            raise NotFound("account", account_id)
        outcome = authz.check(Request(principal, "list_audiences", "", account_id=account_id))
        if not outcome.allowed:
            return Denied([outcome])
        listed = list(gather_listed(authz.policy, account_id, after, limit + 1).items())  # one statement
        page = listed[:limit]
        rows = {a.id: a for a in Audience.select().where(Audience.id.in_([i for i, _ in page]))} if page else {}
        items = []
        for audience_id, gathered in page:
            actions = allowed_actions(authz, gathered)
            if "view" in actions and (action is None or action in actions):
                items.append(audience_view(rows[audience_id], gathered.relation, actions))
        return {"account_id": account_id, "audiences": items,
                "next_after": page[-1][0] if len(listed) > limit else None}
    return run(work, snapshot=True)



def create_audience(authz: Authorizer, principal: str, audience_id: str | None, name: str,
                    source: str, member_count: int) -> dict:
    def work():
        outcome = authz.check(Request(principal, "create_audience", "", account_id=principal))
        if not outcome.allowed:
            return Denied([outcome])
        preconditions.acting_account_exists(principal, "an audience")
        new_id = _new_id(audience_id, "aud")
        Audience.create(id=new_id, owner_account=principal, name=name, type="custom", source=source,
                        member_count=member_count)
        record_event("audience_created", outcome, audience_id=new_id, account_id=principal, name=name,
               audience_type="custom", source=source)
        return {"audience": audience_view(Audience.get_by_id(new_id), "owner", []), "effects": []}
    return run(_with_actions(authz, principal, work))



def _with_actions(authz: Authorizer, principal: str, work):
    """``work`` that also fills in the ``actions`` of the audience it created or changed,
    inside its transaction: nothing that can fail runs after the commit (an answer of 500
    for a change that was made would invite a retry that finds it made)."""
    def completed():
        result = work()
        if isinstance(result, Denied):
            return result
        audience = result["audience"]
        gathered = authz.check(Request(principal, "delete", audience["id"]), log=False,
                               plan_effects=False).gathered
        audience["actions"] = allowed_actions(authz, gathered)
        return result
    return completed



def _new_id(requested: str | None, prefix: str) -> str:
    new_id = requested or f"{prefix}_{uuid.uuid4().hex[:16]}"
    if Audience.select().where(Audience.id == new_id).exists():
        raise ApiError(409, "already_exists", f"an audience with id {new_id!r} exists")
    return new_id



def edit_audience(authz: Authorizer, principal: str, audience_id: str, name: str | None,
                  members: dict | None) -> dict:
    def work():
        lock_audiences([audience_id])
        outcome = decide_visible(authz, principal, audience_id, "edit")
        if not outcome.allowed:
            return Denied([outcome])
        audience = Audience.get_by_id(audience_id)
        changes = {}
        if name is not None:
            audience.name = changes["name"] = name
        if members is not None:
            count = bounded_members({"add": audience.member_count + members["count"],
                                     "remove": audience.member_count - members["count"],
                                     "replace": members["count"]}[members["op"]])
            audience.member_count = changes["member_count"] = count
        return _save_revision(audience, outcome, "audience_updated", changes=changes)
    return run(_with_actions(authz, principal, work))



def _save_revision(audience: Audience, outcome: Outcome, event: str, **payload) -> dict:
    """Save an owner's change as a new revision; record it and the effects the policy named
    (propagate_update: every recipient sees the new revision at once)."""
    audience.revision += 1
    audience.updated_at = utcnow()
    audience.save()
    record_event(event, outcome, audience_id=audience.id, account_id=outcome.request.principal,
           revision=audience.revision, **payload)
    for effect in outcome.effects:
        effect["revision"] = audience.revision
    fx.record(outcome.effects, decision_id=outcome.decision_id)
    return {"audience": audience_view(audience, outcome.gathered.relation, []), "effects": outcome.effects}



def delete_audience(authz: Authorizer, principal: str, audience_id: str) -> dict:
    def work():
        lock_audiences([audience_id])
        outcome = decide_visible(authz, principal, audience_id, "delete")
        if not outcome.allowed:
            return Denied([outcome])
        relation = outcome.gathered.relation
        stop_action = "owner_delete" if relation == "owner" else "recipient_remove"
        fx.apply(outcome.effects, actor=principal, stop_action=stop_action,
                 decision_id=outcome.decision_id)
        if relation == "owner":
            Audience.update(status="deleted", deleted_at=utcnow(), updated_at=utcnow()).where(
                Audience.id == audience_id).execute()
            record_event("audience_deleted", outcome, audience_id=audience_id, account_id=principal)
        return {"audience_id": audience_id, "relation": relation, "deleted": relation == "owner",
                "removed_from_list": relation == "recipient", "effects": outcome.effects}
    return run(work)



def create_lookalike(authz: Authorizer, principal: str, seed_id: str, lookalike_id: str | None,
                     name: str) -> dict:
    def work():
        lock_audiences([seed_id])
        outcome = decide_visible(authz, principal, seed_id, "create_lookalike")
        if not outcome.allowed:
            return Denied([outcome])
        preconditions.acting_account_exists(principal, "a lookalike")
        new_id = _new_id(lookalike_id, "lal")
        seed = Audience.get_by_id(seed_id)
        Audience.create(id=new_id, owner_account=principal, name=name, type="lookalike", source="",
                        seed_audience=seed_id, member_count=bounded_members(seed.member_count * 10))
        record_event("lookalike_created", outcome, audience_id=new_id, account_id=principal,
               seed_audience_id=seed_id, name=name)
        return {"audience": audience_view(Audience.get_by_id(new_id), "owner", []), "effects": []}
    return run(_with_actions(authz, principal, work))



def refresh_lookalike(authz: Authorizer, principal: str, audience_id: str) -> dict:
    def work():
        lock_audiences([audience_id])
        outcome = decide_visible(authz, principal, audience_id, "refresh_lookalike")
        if not outcome.allowed:
            return Denied([outcome])
        audience = Audience.get_by_id(audience_id)
        audience.member_count = bounded_members(preconditions.refreshable(audience).member_count * 10)
        return _save_revision(audience, outcome, "lookalike_refreshed")
    return run(_with_actions(authz, principal, work))

"""The actions of the HTTP API: each asks the policy, then changes state in one transaction.

A deny changes nothing but the decision log; an allow applies the state change and the
effects the policy named, with their events, or (on any error) none of it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import uuid

import peewee as pw

from . import effects as fx
from . import metrics, scope
from .authorizer import Authorizer, Outcome
from .db import lock_clause, transaction
from .errors import ApiError, Denied, NotFound
from .facts import Request, gather_listed
from .locks import LockOrderConflict, final_attempt, lock_ad_group, lock_audiences, lock_scope_change
from .models import (Account, AdGroup, AdGroupAudience, Audience, BusinessCenter, DecisionLog, Event,
                     Share, utcnow)
from .policy import MATRIX_ACTIONS

_RETRYABLE_PGCODES = {"40001", "40P01"}  # serialization failure, deadlock detected
ATTEMPTS = 5
log = logging.getLogger("audience_authz")


def _retryable(exc: Exception) -> bool:
    """A conflict with a concurrent transaction that a fresh attempt resolves: a PostgreSQL
    serialization failure or deadlock, a unique key taken by a transaction that committed
    first (the retry re-reads, so the policy then answers e.g. already_shared or 409), or
    locks that could not be taken in order (locks.LockOrderConflict)."""
    if isinstance(exc, (pw.IntegrityError, LockOrderConflict)):
        return True
    code = getattr(getattr(exc, "orig", exc), "pgcode", None) or getattr(exc.__cause__, "pgcode", None)
    return code in _RETRYABLE_PGCODES


def run(work):
    """Run ``work()`` in one transaction; a Denied it returns is raised after commit (the
    decision log keeps the deny, nothing else changed). Conflicts with concurrent
    transactions are retried (each retry is logged as ``transaction retry``)."""
    for attempt in range(1, ATTEMPTS + 1):
        last = final_attempt.set(attempt == ATTEMPTS)
        try:
            with transaction():
                result = work()
            break
        except (pw.OperationalError, pw.IntegrityError, LockOrderConflict) as exc:
            if attempt == ATTEMPTS or not _retryable(exc):
                raise
            log.warning("transaction retry %d after conflict: %s", attempt, str(exc).splitlines()[0])
        finally:
            final_attempt.reset(last)
    if isinstance(result, Denied):
        raise result
    if isinstance(result, dict) and result.get("effects"):
        metrics.effects_applied(result["effects"])  # counted once committed
    return result


def _lock_audiences(ids) -> None:
    """Row locks in a fixed order, so concurrent actions on one audience serialize
    (PostgreSQL); SQLite's BEGIN IMMEDIATE already serializes writers."""
    lock_audiences(ids)


def _event(type_: str, outcome: Outcome | None = None, **payload) -> None:
    fx.record([dict(type=type_, **payload)], decision_id=outcome.decision_id if outcome else None)


def _denied_if_any(outcomes: list[Outcome]) -> Denied | None:
    refused = [o for o in outcomes if not o.allowed]
    return Denied(refused) if refused else None


# -- entities ------------------------------------------------------------------------------

def upsert_business_center(authz: Authorizer, bc_id: str, name: str, cross_bc_allowlisted: bool) -> dict:
    def work():
        def narrows(row) -> bool:  # losing the allowlisting may leave cross-BC shares out of scope
            return row is not None and row.cross_bc_allowlisted and not cross_bc_allowlisted

        def write():
            BusinessCenter.insert(id=bc_id, name=name, cross_bc_allowlisted=cross_bc_allowlisted).on_conflict(
                conflict_target=[BusinessCenter.id],
                update={BusinessCenter.name: name, BusinessCenter.cross_bc_allowlisted: cross_bc_allowlisted},
            ).execute()

        def announce():
            _event("business_center_upserted", business_center_id=bc_id, name=name,
                   cross_bc_allowlisted=cross_bc_allowlisted)

        lock_scope_change("business_center", bc_id)
        row = BusinessCenter.select().where(BusinessCenter.id == bc_id)
        ended = scope.reviewed_change(
            authz, find=lambda: scope.shares_from_business_center(bc_id),
            stake=lambda: scope.audiences_of_business_center(bc_id),
            likely=narrows(row.first()), lock_and_check=lambda: narrows(row.for_update(bool(lock_clause())).first()),
            write=write, announce=announce)
        return {"id": bc_id, "name": name, "cross_bc_allowlisted": cross_bc_allowlisted, "effects": ended}
    return run(work)


def upsert_account(authz: Authorizer, account_id: str, name: str, business_center_id: str | None) -> dict:
    def work():
        if business_center_id is not None and not BusinessCenter.select().where(
                BusinessCenter.id == business_center_id).exists():
            raise NotFound("business_center", business_center_id)

        def moves(row) -> bool:  # another Business Center (or none) may leave shares out of scope
            return row is not None and row.business_center_id != business_center_id

        def write():
            Account.insert(id=account_id, name=name, business_center=business_center_id).on_conflict(
                conflict_target=[Account.id],
                update={Account.name: name, Account.business_center: business_center_id},
            ).execute()

        def announce():
            _event("account_upserted", account_id=account_id, name=name,
                   business_center_id=business_center_id)

        lock_scope_change("account", account_id)
        row = Account.select().where(Account.id == account_id)
        ended = scope.reviewed_change(
            authz, find=lambda: scope.shares_of_account(account_id),
            stake=lambda: scope.audiences_of_account(account_id),
            likely=moves(row.first()), lock_and_check=lambda: moves(row.for_update(bool(lock_clause())).first()),
            write=write, announce=announce)
        return {**account_view(Account.get_by_id(account_id)), "effects": ended}
    return run(work)


def account_view(account: Account) -> dict:
    return {
        "id": account.id, "name": account.name, "business_center_id": account.business_center_id,
        "terms_accepted_at": _iso(account.terms_accepted_at),
    }


def accept_terms(authz: Authorizer, principal: str, account_id: str) -> dict:
    def work():
        if not Account.select().where(Account.id == account_id).exists():
            raise NotFound("account", account_id)
        outcome = authz.check(Request(principal, "accept_terms", "", account_id=account_id))
        if not outcome.allowed:
            return Denied([outcome])
        account = Account.get_by_id(account_id)
        if account.terms_accepted_at is None:
            account.terms_accepted_at = utcnow()
            account.save()
            _event("terms_accepted", outcome, account_id=account_id)
        return account_view(account)
    return run(work)


# -- audiences -----------------------------------------------------------------------------

def audience_view(audience: Audience, relation: str, actions: list[str]) -> dict:
    return {
        "id": audience.id, "name": audience.name, "type": audience.type,
        "source": audience.source or None, "seed_audience_id": audience.seed_audience_id,
        "owner_account_id": audience.owner_account_id, "status": audience.status,
        "member_count": audience.member_count, "revision": audience.revision,
        "created_at": _iso(audience.created_at), "updated_at": _iso(audience.updated_at),
        "deleted_at": _iso(audience.deleted_at), "relation": relation, "actions": actions,
    }


def allowed_actions(authz: Authorizer, gathered) -> list[str]:
    """The matrix actions the policy allows this account on this audience. ``share`` is
    asked of a would-be target in the same Business Center with no share yet, ``apply``
    of an ad group of the account's own, ``stop_sharing`` of all recipients."""
    policy = authz.policy
    facts = gathered.facts
    hypothetical = {
        "share": dataclasses.replace(facts, target_specified=True, target_known=True, target_in_bc=True,
                                     target_is_self=False, same_bc=True, target_has_share=False),
        "apply": dataclasses.replace(facts, ad_group_known=True, ad_group_owned=True),
        "stop_sharing": dataclasses.replace(facts, target_specified=False),
    }
    return [act for act in MATRIX_ACTIONS
            if policy.decide(gathered.relation, act, hypothetical.get(act, facts)).allowed]


def _visible(authz: Authorizer, principal: str, audience_id: str, action: str,
             target_account_id: str | None = None) -> Outcome:
    """The decision on ``action``; an audience id the store does not know is a 404."""
    outcome = authz.check(Request(principal, action, audience_id, target_account_id=target_account_id))
    if outcome.decision.reason == "unknown_audience":
        raise NotFound("audience", audience_id)
    return outcome


def get_audience(authz: Authorizer, principal: str, audience_id: str) -> dict:
    def work():
        outcome = _visible(authz, principal, audience_id, "view")
        if not outcome.allowed:
            return Denied([outcome])
        gathered = authz.check(Request(principal, "delete", audience_id), log=False,
                               plan_effects=False).gathered
        return audience_view(Audience.get_by_id(audience_id), outcome.gathered.relation,
                             allowed_actions(authz, gathered))
    return run(work)


def list_audiences(authz: Authorizer, principal: str, account_id: str) -> dict:
    def work():
        if not Account.select().where(Account.id == account_id).exists():
            raise NotFound("account", account_id)
        outcome = authz.check(Request(principal, "list_audiences", "", account_id=account_id))
        if not outcome.allowed:
            return Denied([outcome])
        owned = Audience.select().where((Audience.owner_account == account_id) & (Audience.status == "active"))
        shared = (Audience.select().join(Share, on=(Share.audience == Audience.id))
                  .where((Share.recipient_account == account_id) & (Share.status == "active")))
        listed = gather_listed(authz.policy, account_id)  # one statement for the whole list
        items = []
        for audience in sorted([*owned, *shared], key=lambda a: a.id):
            gathered = listed[audience.id]
            actions = allowed_actions(authz, gathered)
            if "view" in actions:
                items.append(audience_view(audience, gathered.relation, actions))
        return {"account_id": account_id, "audiences": items}
    return run(work)


def create_audience(authz: Authorizer, principal: str, audience_id: str | None, name: str,
                    source: str, member_count: int) -> dict:
    def work():
        outcome = authz.check(Request(principal, "create_audience", "", account_id=principal))
        if not outcome.allowed:
            return Denied([outcome])
        new_id = _new_id(audience_id, "aud")
        Audience.create(id=new_id, owner_account=principal, name=name, type="custom", source=source,
                        member_count=member_count)
        _event("audience_created", outcome, audience_id=new_id, account_id=principal, name=name,
               audience_type="custom", source=source)
        return {"audience": audience_view(Audience.get_by_id(new_id), "owner", []), "effects": []}
    return _with_actions(authz, principal, run(work))


def _with_actions(authz: Authorizer, principal: str, result: dict) -> dict:
    """Fill in the ``actions`` of a freshly created or changed audience."""
    audience = result["audience"]
    gathered = authz.check(Request(principal, "delete", audience["id"]), log=False,
                           plan_effects=False).gathered
    audience["actions"] = allowed_actions(authz, gathered)
    return result


def _new_id(requested: str | None, prefix: str) -> str:
    new_id = requested or f"{prefix}_{uuid.uuid4().hex[:16]}"
    if Audience.select().where(Audience.id == new_id).exists():
        raise ApiError(409, "already_exists", f"an audience with id {new_id!r} exists")
    return new_id


def edit_audience(authz: Authorizer, principal: str, audience_id: str, name: str | None,
                  members: dict | None) -> dict:
    def work():
        _lock_audiences([audience_id])
        outcome = _visible(authz, principal, audience_id, "edit")
        if not outcome.allowed:
            return Denied([outcome])
        audience = Audience.get_by_id(audience_id)
        changes = {}
        if name is not None:
            audience.name = changes["name"] = name
        if members is not None:
            count = {"add": audience.member_count + members["count"],
                     "remove": max(0, audience.member_count - members["count"]),
                     "replace": members["count"]}[members["op"]]
            audience.member_count = changes["member_count"] = count
        return _save_revision(audience, outcome, "audience_updated", changes=changes)
    return _with_actions(authz, principal, run(work))


def _save_revision(audience: Audience, outcome: Outcome, event: str, **payload) -> dict:
    """Save an owner's change as a new revision; record it and the effects the policy named
    (propagate_update: every recipient sees the new revision at once)."""
    audience.revision += 1
    audience.updated_at = utcnow()
    audience.save()
    _event(event, outcome, audience_id=audience.id, account_id=outcome.request.principal,
           revision=audience.revision, **payload)
    for effect in outcome.effects:
        effect["revision"] = audience.revision
    fx.record(outcome.effects, decision_id=outcome.decision_id)
    return {"audience": audience_view(audience, "owner", []), "effects": outcome.effects}


def delete_audience(authz: Authorizer, principal: str, audience_id: str) -> dict:
    def work():
        _lock_audiences([audience_id])
        outcome = _visible(authz, principal, audience_id, "delete")
        if not outcome.allowed:
            return Denied([outcome])
        relation = outcome.gathered.relation
        stop_action = "owner_delete" if relation == "owner" else "recipient_remove"
        fx.apply(outcome.effects, actor=principal, stop_action=stop_action,
                 decision_id=outcome.decision_id)
        if relation == "owner":
            Audience.update(status="deleted", deleted_at=utcnow(), updated_at=utcnow()).where(
                Audience.id == audience_id).execute()
            _event("audience_deleted", outcome, audience_id=audience_id, account_id=principal)
        return {"audience_id": audience_id, "relation": relation, "deleted": relation == "owner",
                "removed_from_list": relation == "recipient", "effects": outcome.effects}
    return run(work)


# -- sharing -------------------------------------------------------------------------------

def share(authz: Authorizer, principal: str, audience_id: str, account_ids: list[str]) -> dict:
    def work():
        _lock_audiences([audience_id])
        owner = Audience.select(Audience.owner_account).where(Audience.id == audience_id).scalar()
        if owner is not None:
            scope.lock_scope_rows(owner, account_ids)
        outcomes = [_visible(authz, principal, audience_id, "share", target) for target in account_ids]
        denied = _denied_if_any(outcomes)
        if denied:
            return denied
        now = utcnow()
        Share.insert_many([{"audience": audience_id, "recipient_account": target, "status": "active",
                            "created_at": now, "created_by": principal} for target in account_ids]).execute()
        for outcome, target in zip(outcomes, account_ids):
            _event("share_created", outcome, audience_id=audience_id, account_id=target,
                   action="share", actor=principal)
        return {"audience_id": audience_id, "shared_with": account_ids,
                "recipients": fx.active_recipients(audience_id, None), "effects": []}
    return run(work)


def list_shares(authz: Authorizer, principal: str, audience_id: str) -> dict:
    def work():
        outcome = _visible(authz, principal, audience_id, "view_shares")
        if not outcome.allowed:
            return Denied([outcome])
        shares = (Share.select().where((Share.audience == audience_id) & (Share.status == "active"))
                  .order_by(Share.recipient_account))
        return {"audience_id": audience_id, "shares": [
            {"account_id": s.recipient_account_id, "created_at": _iso(s.created_at),
             "created_by": s.created_by} for s in shares]}
    return run(work)


def stop_sharing(authz: Authorizer, principal: str, audience_id: str, account_id: str | None) -> dict:
    def work():
        _lock_audiences([audience_id])
        outcome = _visible(authz, principal, audience_id, "stop_sharing", account_id)
        if not outcome.allowed:
            return Denied([outcome])
        fx.apply(outcome.effects, actor=principal, stop_action="stop", decision_id=outcome.decision_id)
        return {"audience_id": audience_id, "stopped": [e["account_id"] for e in outcome.effects
                                                        if e["type"] == "end_share"],
                "effects": outcome.effects}
    return run(work)


def share_log(authz: Authorizer, principal: str, audience_id: str, after: int, limit: int) -> dict:
    def work():
        outcome = _visible(authz, principal, audience_id, "view_shares")
        if not outcome.allowed:
            return Denied([outcome])
        events = (Event.select().where((Event.audience_id == audience_id) & (Event.id > after)
                                       & Event.type.in_(["share_created", "end_share"]))
                  .order_by(Event.id).limit(limit))
        entries = []
        for event in events:
            payload = _json(event.payload)
            entries.append({"id": event.id, "account_id": event.account_id, "action": payload["action"],
                            "actor": payload["actor"], "at": _iso(event.at)})
        return {"audience_id": audience_id, "entries": entries,
                "next_after": entries[-1]["id"] if len(entries) == limit else None}
    return run(work)


# -- lookalikes ----------------------------------------------------------------------------

def create_lookalike(authz: Authorizer, principal: str, seed_id: str, lookalike_id: str | None,
                     name: str) -> dict:
    def work():
        _lock_audiences([seed_id])
        outcome = _visible(authz, principal, seed_id, "create_lookalike")
        if not outcome.allowed:
            return Denied([outcome])
        new_id = _new_id(lookalike_id, "lal")
        seed = Audience.get_by_id(seed_id)
        Audience.create(id=new_id, owner_account=principal, name=name, type="lookalike", source="",
                        seed_audience=seed_id, member_count=seed.member_count * 10)
        _event("lookalike_created", outcome, audience_id=new_id, account_id=principal,
               seed_audience_id=seed_id, name=name)
        return {"audience": audience_view(Audience.get_by_id(new_id), "owner", []), "effects": []}
    return _with_actions(authz, principal, run(work))


def refresh_lookalike(authz: Authorizer, principal: str, audience_id: str) -> dict:
    def work():
        _lock_audiences([audience_id])
        outcome = _visible(authz, principal, audience_id, "refresh_lookalike")
        if not outcome.allowed:
            return Denied([outcome])
        audience = Audience.get_by_id(audience_id)
        audience.member_count = audience.seed_audience.member_count * 10
        return _save_revision(audience, outcome, "lookalike_refreshed")
    return _with_actions(authz, principal, run(work))


# -- ad groups -----------------------------------------------------------------------------

def ad_group_view(group: AdGroup) -> dict:
    targeting = {"include": [], "exclude": []}
    for row in (AdGroupAudience.select().where(AdGroupAudience.ad_group == group.id)
                .order_by(AdGroupAudience.mode, AdGroupAudience.position)):
        targeting[row.mode].append(row.audience_id)
    return {"id": group.id, "account_id": group.account_id, "name": group.name, "status": group.status,
            **targeting, "no_audience_targeting": not targeting["include"] and not targeting["exclude"],
            "updated_at": _iso(group.updated_at)}


def get_ad_group(authz: Authorizer, principal: str, ad_group_id: str) -> dict:
    def work():
        group = AdGroup.get_or_none(AdGroup.id == ad_group_id)
        if group is None:
            raise NotFound("ad_group", ad_group_id)
        outcome = authz.check(Request(principal, "view_ad_group", "", ad_group_id=ad_group_id))
        if not outcome.allowed:
            return Denied([outcome])
        return ad_group_view(group)
    return run(work)


def upsert_ad_group(authz: Authorizer, principal: str, ad_group_id: str, name: str,
                    include: list[str], exclude: list[str]) -> dict:
    def work():
        lock_ad_group(ad_group_id)
        # the audiences it targets now and will target: a concurrent stop sharing or delete
        # of any of them either sees this upsert whole or comes after it
        current = AdGroupAudience.select(AdGroupAudience.audience).where(AdGroupAudience.ad_group == ad_group_id)
        _lock_audiences({*include, *exclude, *(row.audience_id for row in current)})
        outcome = authz.check(Request(principal, "edit_ad_group", "", ad_group_id=ad_group_id))
        if not outcome.allowed:
            return Denied([outcome])
        applies = [authz.check(Request(principal, "apply", audience_id, ad_group_id=ad_group_id),
                               ad_group_override=(ad_group_id, principal))
                   for audience_id in [*include, *exclude]]
        for check in applies:
            if not check.allowed:
                check.reasons[0]["audience_id"] = check.request.audience_id
        denied = _denied_if_any(applies)
        if denied:
            return denied
        created = outcome.gathered.relation == "new"
        AdGroup.insert(id=ad_group_id, account=principal, name=name, updated_at=utcnow()).on_conflict(
            conflict_target=[AdGroup.id], update={AdGroup.name: name, AdGroup.updated_at: utcnow()}).execute()
        AdGroupAudience.delete().where(AdGroupAudience.ad_group == ad_group_id).execute()
        rows = [{"ad_group": ad_group_id, "audience": a, "mode": mode, "position": i}
                for mode, ids in (("include", include), ("exclude", exclude)) for i, a in enumerate(ids)]
        if rows:
            AdGroupAudience.insert_many(rows).execute()
        _event("ad_group_upserted", outcome, ad_group_id=ad_group_id, account_id=principal, name=name,
               include=include, exclude=exclude, created=created)
        return {"ad_group": ad_group_view(AdGroup.get_by_id(ad_group_id)), "created": created,
                "effects": []}
    return run(work)


# -- feeds ---------------------------------------------------------------------------------

def events(after: int, limit: int) -> dict:
    rows = Event.select().where(Event.id > after).order_by(Event.id).limit(limit)
    items = [{"id": e.id, "type": e.type, "audience_id": e.audience_id, "account_id": e.account_id,
              "decision_id": e.decision_id, "at": _iso(e.at), "payload": _json(e.payload)} for e in rows]
    return {"events": items, "next_after": items[-1]["id"] if items else after}


def decisions(after: int, limit: int) -> dict:
    rows = DecisionLog.select().where(DecisionLog.id > after).order_by(DecisionLog.id).limit(limit)
    items = [{"id": d.id, "decision_id": d.decision_id, "at": _iso(d.at), "principal": d.principal,
              "action": d.action, "resource": _json(d.resource), "decision": d.decision,
              "reasons": _json(d.reasons), "policy_version": d.policy_version,
              "relation": d.relation, "rule_line": d.rule_line} for d in rows]
    return {"decisions": items, "next_after": items[-1]["id"] if items else after}


def _iso(value) -> str | None:
    return None if value is None else value.isoformat(timespec="microseconds") + "Z"


def _json(text: str):
    return json.loads(text)

"""Business Centers, accounts and the acceptance of the Custom Audience Terms.

An upsert that leaves out a field of the sharing scope (a Business Center's allowlisting,
an account's Business Center) keeps the stored value: a change that narrows the scope,
and so ends shares, is only ever made by naming it.
"""

from __future__ import annotations

import enum

from audience_authz.actions import sharing_scope as scope
from audience_authz.actions.steps import record_event
from audience_authz.actions.views import account_view
from audience_authz.engine.authorizer import Authorizer
from audience_authz.engine.facts import Request
from audience_authz.exceptions import Denied, NotFound
from audience_authz.store.db import lock_clause
from audience_authz.store.locks import lock_scope_change
from audience_authz.store.models import Account, BusinessCenter, utcnow
from audience_authz.store.transactions import run


class Keep(enum.Enum):
    """A scope field the caller left out: the stored value stays (the default on creation)."""

    STORED = "stored"


KEEP = Keep.STORED


def upsert_business_center(authz: Authorizer, bc_id: str, name: str,
                           cross_bc_allowlisted: bool | Keep = KEEP) -> dict:
    def work():
        lock_scope_change("business_center", bc_id)
        row = BusinessCenter.select().where(BusinessCenter.id == bc_id)
        keep = cross_bc_allowlisted is KEEP

        def narrows(found) -> bool:  # losing the allowlisting may leave cross-BC shares out of scope
            return not keep and found is not None and found.cross_bc_allowlisted and not cross_bc_allowlisted

        def write():
            update = {BusinessCenter.name: name}
            if not keep:
                update[BusinessCenter.cross_bc_allowlisted] = cross_bc_allowlisted
            BusinessCenter.insert(id=bc_id, name=name, cross_bc_allowlisted=False if keep else cross_bc_allowlisted
                                  ).on_conflict(conflict_target=[BusinessCenter.id], update=update).execute()

        def announce():
            if not unchanged:  # an identical upsert changes nothing: no event
                record_event("business_center_upserted", business_center_id=bc_id, name=name,
                             cross_bc_allowlisted=BusinessCenter.get_by_id(bc_id).cross_bc_allowlisted)

        before = row.first()
        unchanged = before is not None and before.name == name and (
            keep or before.cross_bc_allowlisted == cross_bc_allowlisted)
        ended = scope.reviewed_change(
            authz, find=lambda: scope.shares_from_business_center(bc_id),
            stake=lambda: scope.audiences_of_business_center(bc_id),
            likely=narrows(row.first()), lock_and_check=lambda: narrows(row.for_update(bool(lock_clause())).first()),
            write=write, announce=announce)
        stored = BusinessCenter.get_by_id(bc_id)
        return {"id": bc_id, "name": stored.name, "cross_bc_allowlisted": stored.cross_bc_allowlisted,
                "effects": ended}
    return run(work)


def upsert_account(authz: Authorizer, account_id: str, name: str,
                   business_center_id: str | None | Keep = KEEP) -> dict:
    def work():
        keep = business_center_id is KEEP
        if not keep and business_center_id is not None and not BusinessCenter.select().where(
                BusinessCenter.id == business_center_id).exists():
            raise NotFound("business_center", business_center_id)

        def moves(found) -> bool:  # another Business Center (or none) may leave shares out of scope
            return not keep and found is not None and found.business_center_id != business_center_id

        def write():
            update = {Account.name: name}
            if not keep:
                update[Account.business_center] = business_center_id
            Account.insert(id=account_id, name=name, business_center=None if keep else business_center_id
                           ).on_conflict(conflict_target=[Account.id], update=update).execute()

        def announce():
            if not unchanged:  # an identical upsert changes nothing: no event
                record_event("account_upserted", account_id=account_id, name=name,
                             business_center_id=Account.get_by_id(account_id).business_center_id)

        lock_scope_change("account", account_id)
        row = Account.select().where(Account.id == account_id)
        before = row.first()
        unchanged = before is not None and before.name == name and (
            keep or before.business_center_id == business_center_id)
        ended = scope.reviewed_change(
            authz, find=lambda: scope.shares_of_account(account_id),
            stake=lambda: scope.audiences_of_account(account_id),
            likely=moves(row.first()), lock_and_check=lambda: moves(row.for_update(bool(lock_clause())).first()),
            write=write, announce=announce)
        return {**account_view(Account.get_by_id(account_id)), "effects": ended}
    return run(work)



def get_account(authz: Authorizer, principal: str, account_id: str) -> dict:
    """The account, to itself and to the accounts of its Business Center (the policy's
    ``view_account``)."""
    def work():
        account = Account.get_or_none(Account.id == account_id)
        if account is None:
            raise NotFound("account", account_id)
        outcome = authz.check(Request(principal, "view_account", "", account_id=account_id))
        if not outcome.allowed:
            return Denied([outcome])
        return account_view(account)
    return run(work)


def get_business_center(authz: Authorizer, principal: str, bc_id: str) -> dict:
    """The Business Center, to its own accounts (the policy's ``view_business_center``)."""
    def work():
        bc = BusinessCenter.get_or_none(BusinessCenter.id == bc_id)
        if bc is None:
            raise NotFound("business_center", bc_id)
        outcome = authz.check(Request(principal, "view_business_center", "", business_center_id=bc_id))
        if not outcome.allowed:
            return Denied([outcome])
        return {"id": bc.id, "name": bc.name, "cross_bc_allowlisted": bc.cross_bc_allowlisted}
    return run(work)


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
            record_event("terms_accepted", outcome, account_id=account_id)
        return account_view(account)
    return run(work)

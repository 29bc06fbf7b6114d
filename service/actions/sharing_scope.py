"""Shares whose sharing scope changed under them.

The sharing scope (both accounts in a Business Center; the same one, or the owner's
allowlisted) is checked when a share is made, and it can stop holding later: an account
moves to another Business Center or to none, or a Business Center loses its
allowlisting. In the same transaction as that change, the policy is asked ``keep_share``
about every active share it touches; a share the policy refuses ends as if its owner had
stopped it, with the effects of the policy's ``stop_sharing`` (end_share,
remove_from_list, disconnect_audience), recorded with ``stop_action`` ``scope_ended``.
"""

from __future__ import annotations

from audience_authz.engine.facts import Request
from audience_authz.store import effects as fx
from audience_authz.store.db import lock_clause
from audience_authz.store.locks import lock_audiences, take_late
from audience_authz.store.models import database

ACTOR = "system:scope_change"

_SHARES_SQL = """
SELECT s.audience_id, s.recipient_account_id, a.owner_account_id
FROM audience_share s
JOIN audience a ON a.id = s.audience_id
JOIN account oa ON oa.id = a.owner_account_id
WHERE s.status = 'active' AND ({where})
ORDER BY s.audience_id, s.recipient_account_id"""


def _shares(where: str, params: list) -> list[tuple[str, str, str]]:
    sql = _SHARES_SQL.format(where=where.replace("?", database.obj.param))
    return [tuple(row) for row in database.execute_sql(sql, params)]


def shares_of_account(account_id: str) -> list[tuple[str, str, str]]:
    """(audience, recipient, owner) of the active shares the account owns or receives."""
    return _shares("a.owner_account_id = ? OR s.recipient_account_id = ?", [account_id, account_id])


def audiences_of_account(account_id: str) -> set[str]:
    """What a move of the account puts at stake: the audiences it owns or receives."""
    p = database.obj.param
    rows = database.execute_sql(
        f"SELECT id FROM audience WHERE owner_account_id = {p} AND status = 'active' UNION"
        f" SELECT audience_id FROM audience_share WHERE recipient_account_id = {p} AND status = 'active'",
        [account_id, account_id])
    return {row[0] for row in rows}


def audiences_of_business_center(bc_id: str) -> set[str]:
    """What the Business Center losing its allowlisting puts at stake: its accounts' audiences."""
    p = database.obj.param
    rows = database.execute_sql(
        f"SELECT a.id FROM audience a JOIN account oa ON oa.id = a.owner_account_id"
        f" WHERE oa.business_center_id = {p} AND a.status = 'active'", [bc_id])
    return {row[0] for row in rows}


def shares_from_business_center(bc_id: str) -> list[tuple[str, str, str]]:
    """Active shares whose owner account is in the Business Center."""
    return _shares("oa.business_center_id = ?", [bc_id])


def lock_scope_rows(owner_account_id: str, account_ids: list[str]) -> None:
    """Taken by a share before it reads the scope: a concurrent move of one of these
    accounts or of the owner's Business Center waits for the share, or the share for it
    (then reading the new scope). PostgreSQL only; SQLite runs one writer at a time."""
    if not lock_clause():
        return
    p = database.obj.param
    ids = sorted({owner_account_id, *account_ids})
    database.execute_sql(f"SELECT id FROM account WHERE id IN ({', '.join([p] * len(ids))}) ORDER BY id FOR SHARE",
                         ids)
    database.execute_sql(f"SELECT id FROM business_center WHERE id = (SELECT business_center_id FROM account"
                         f" WHERE id = {p}) FOR SHARE", [owner_account_id])


def reviewed_change(authz, *, find, stake, likely: bool, lock_and_check, write, announce) -> list[dict]:
    """Change an account's or a Business Center's scope (``write`` the row, ``announce`` its
    event), and end the shares ``find()`` names that the policy no longer keeps. Returns
    the effects applied.

    Lock order (PostgreSQL), the same as a share's: the audiences at stake (``stake()``,
    taken when the unlocked read ``likely`` says the scope changes), then the changed row
    (``lock_and_check`` says, under that lock, whether the scope changes; no share can join
    after it), then the rows the effects touch, and the event feed last. A change that
    needs an audience it did not lock first is run again by ``actions.run``. Callers take
    ``locks.lock_scope_change`` first, so ``likely`` is not made stale by another change."""
    locked = stake() if likely else set()
    lock_audiences(locked)
    if not lock_and_check():
        write()
        announce()
        return []
    take_late({audience for audience, _, _ in find()} - locked)
    write()
    stops = []
    for audience, recipient, owner in find():
        keep = authz.check(Request(owner, "keep_share", audience, target_account_id=recipient),
                           plan_effects=False)
        if keep.allowed:
            continue
        stop = authz.check(Request(owner, "stop_sharing", audience, target_account_id=recipient))
        if not stop.allowed:  # fail closed: the change that left the share out of scope is refused
            raise RuntimeError(f"cannot end the out-of-scope share of {audience} to {recipient}: "
                               f"{stop.decision.reason}")
        for effect in stop.effects:
            effect["reason"] = keep.decision.reason
        fx.apply_rows(stop.effects, actor=ACTOR, stop_action="scope_ended")
        stops.append(stop)
    announce()
    for stop in stops:
        fx.record_applied(stop.effects, actor=ACTOR, stop_action="scope_ended", decision_id=stop.decision_id)
    return [effect for stop in stops for effect in stop.effects]

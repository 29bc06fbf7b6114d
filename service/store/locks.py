"""Locks that keep concurrent actions correct on PostgreSQL (SQLite's BEGIN IMMEDIATE
already runs one writer at a time, so each helper is a no-op there).

Lock order, the same in every action so that none can deadlock another: the ad group
being upserted or the account/Business Center whose scope changes (advisory), then
audience rows (sorted, ``lock_audiences``), then whatever rows the action writes (ad
groups it disconnects sorted, ``lock_ad_groups``), and last the event feed.
"""

from __future__ import annotations

import contextvars

from audience_authz.store.db import is_postgres, writing
from audience_authz.store.models import database

_AD_GROUP, _EVENT_FEED, _SCOPE, _DECISION_LOG = 1, 2, 3, 4  # namespaces of the two-key advisory locks
# False while ``actions.run`` has attempts left: a lock-order conflict is then retried
# rather than resolved by locking out of order (which PostgreSQL's deadlock check backs up)
final_attempt: contextvars.ContextVar[bool] = contextvars.ContextVar("final_attempt", default=True)


class LockOrderConflict(Exception):
    """A transaction found, under a row's lock, that it needs locks it could only take out
    of order now (a deadlock risk): ``actions.run`` runs it again, when it knows them."""


def hold_decision_log() -> None:
    """The first lock of every transaction that may add decision-log rows (an action, a
    batched flush): shared, so writers never wait for one another, only for a reader
    taking ``decision_log_high_water`` (and it for them). Taken first, before any other
    lock, so a writer queued behind a waiting reader holds nothing another writer needs."""
    if is_postgres():
        database.execute_sql("SELECT pg_advisory_xact_lock_shared(%s, 0)", [_DECISION_LOG])


def decision_log_high_water() -> int | None:
    """The largest decision-log id below which no row can still appear, on PostgreSQL
    (None elsewhere: SQLite's one writer holds its lock from taking an id to the commit).
    An id is taken when a row is inserted, and the transaction may commit long after, so a
    reader paging by id could pass a smaller id that commits later (skipping it for ever).
    Under the exclusive form of ``hold_decision_log`` no writer is between taking an id
    and ending, so the largest committed id read there has every smaller id settled."""
    if not is_postgres():
        return None
    with database.atomic():
        database.execute_sql("SELECT pg_advisory_xact_lock(%s, 0)", [_DECISION_LOG])
        return database.execute_sql("SELECT COALESCE(MAX(id), 0) FROM decision_log").fetchone()[0]


def take_late(ids) -> None:
    """Audience locks found missing after a later lock: retry the transaction, or on its
    last attempt take them out of order."""
    if ids and is_postgres() and not final_attempt.get():
        raise LockOrderConflict(f"needs {len(ids)} audience lock(s) it did not take first")
    lock_audiences(ids)


def lock_scope_change(kind: str, key: str) -> None:
    """Serialize scope changes (moves, allowlisting) of one account or Business Center, so
    each reads the state the previous one left before choosing its locks."""
    if is_postgres():
        database.execute_sql("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [_SCOPE, f"{kind}:{key}"])


def lock_audiences(ids) -> None:
    """Row locks on audiences in a fixed (sorted) order, so concurrent actions on one
    audience serialize."""
    if is_postgres() and ids:
        p = database.obj.param
        database.execute_sql(
            f"SELECT id FROM audience WHERE id IN ({', '.join([p] * len(ids))}) ORDER BY id FOR UPDATE",
            sorted(ids))


def lock_ad_group(ad_group_id: str) -> None:
    """Serialize upserts of one ad group, its creation included (there is no row to lock
    yet): two accounts racing to create the same id must not both pass the policy."""
    if is_postgres():
        database.execute_sql("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [_AD_GROUP, ad_group_id])


def lock_ad_groups(ids_sql: str, params: list) -> None:
    """Row locks, in id order, on the ad groups ``ids_sql`` selects, taken by an action
    before it reads their targeting to rewrite it (a disconnect): two actions removing
    different audiences from one ad group hold different audience locks, so without this
    both would read the same targeting and each record an ``after`` that keeps the other's
    audience. Only in a writing transaction: a decision's preview of the same effects
    (``/v1/authorize``) reads without locking anything."""
    if is_postgres() and writing():
        database.execute_sql(f"SELECT id FROM ad_group WHERE id IN ({ids_sql}) ORDER BY id FOR UPDATE", params)


def lock_event_feed() -> None:
    """Assign event ids in commit order: held from the first event insert to the commit,
    so a feed reader paging with ``after=<last id>`` never skips an event that a slower
    transaction with a smaller id commits later. Ids may still have holes (a rolled back
    transaction used them), never a late arrival below an id already read."""
    if is_postgres():
        database.execute_sql("SELECT pg_advisory_xact_lock(%s, 0)", [_EVENT_FEED])

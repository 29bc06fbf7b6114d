"""Locks that keep concurrent actions correct on PostgreSQL (SQLite's BEGIN IMMEDIATE
already runs one writer at a time, so each helper is a no-op there).

Lock order, the same in every action so that none can deadlock another: the ad group
being upserted, then audience rows (sorted, ``actions._lock_audiences``), then whatever
rows the action writes, and last the event feed.
"""

from __future__ import annotations

from .db import is_postgres
from .models import database

_AD_GROUP, _EVENT_FEED = 1, 2  # namespaces of the two-key advisory locks


class LockOrderConflict(Exception):
    """A transaction found, under a row's lock, that it needs locks it could only take out
    of order now (a deadlock risk): ``actions.run`` runs it again, when it knows them."""


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


def lock_event_feed() -> None:
    """Assign event ids in commit order: held from the first event insert to the commit,
    so a feed reader paging with ``after=<last id>`` never skips an event that a slower
    transaction with a smaller id commits later. Ids may still have holes (a rolled back
    transaction used them), never a late arrival below an id already read."""
    if is_postgres():
        database.execute_sql("SELECT pg_advisory_xact_lock(%s, 0)", [_EVENT_FEED])

"""Stop sharing one audience applied in many recipient ad groups: the heaviest action.

The fixture follows the source's table: an owner shares audiences A, B and C with R
recipients; each recipient has G ad groups cycling through the five targeting shapes
(include A; exclude A; include A, B, C; exclude A, B, C; include A, exclude B). Stopping
A for everyone then disconnects R x G ad groups, ends R shares and records every effect as
an event, in one transaction, through the service's own ``actions.stop_sharing``.
"""

from __future__ import annotations

import time

from audience_authz import actions
from audience_authz.store.models import database
from bench.build_store import STAMP

SHAPES = ((["A"], []), ([], ["A"]), (["A", "B", "C"], []), ([], ["A", "B", "C"]), (["A"], ["B"]))


def create_fixture(run_id: str, recipients: int, groups_per_recipient: int) -> dict:
    prefix = f"stopbench_{run_id}"
    owner = f"{prefix}_owner"
    bc = f"{prefix}_bc"
    audience = {name: f"{prefix}_{name}" for name in "ABC"}
    accounts = [f"{prefix}_r{k}" for k in range(recipients)]
    groups, targeting = [], []
    for k, account in enumerate(accounts):
        for m in range(groups_per_recipient):
            group = f"{prefix}_g{k}_{m}"
            groups.append((group, account, f"group {k}/{m}", "enabled", STAMP))
            include, exclude = SHAPES[m % len(SHAPES)]
            for mode, names in (("include", include), ("exclude", exclude)):
                targeting += [(group, audience[n], mode, i) for i, n in enumerate(names)]
    conn = database.connection()
    with database.atomic():
        conn.execute("INSERT INTO business_center (id, name, cross_bc_allowlisted) VALUES (?, ?, ?)",
                     (bc, "stop-sharing benchmark", False))
        conn.executemany("INSERT INTO account (id, name, business_center_id, terms_accepted_at)"
                         " VALUES (?, ?, ?, ?)", [(a, a, bc, STAMP) for a in [owner, *accounts]])
        conn.executemany(
            "INSERT INTO audience (id, owner_account_id, name, type, source, status, member_count, revision,"
            " created_at, updated_at) VALUES (?, ?, ?, 'custom', 'website_traffic', 'active', 1000, 1, ?, ?)",
            [(a, owner, a, STAMP, STAMP) for a in audience.values()])
        conn.executemany("INSERT INTO audience_share (audience_id, recipient_account_id, status, created_at,"
                         " created_by) VALUES (?, ?, 'active', ?, ?)",
                         [(a, r, STAMP, owner) for a in audience.values() for r in accounts])
        conn.executemany("INSERT INTO ad_group (id, account_id, name, status, updated_at) VALUES (?, ?, ?, ?, ?)",
                         groups)
        conn.executemany("INSERT INTO ad_group_audience (ad_group_id, audience_id, mode, position)"
                         " VALUES (?, ?, ?, ?)", targeting)
    return {"owner": owner, "audience": audience["A"], "recipients": recipients,
            "ad_groups": len(groups)}


def measure(authz, fixture: dict) -> dict:
    """Stop sharing A with every recipient; the seconds it took and what it did."""
    started = time.perf_counter()
    result = actions.stop_sharing(authz, fixture["owner"], fixture["audience"], None)
    seconds = time.perf_counter() - started
    effects = result["effects"]
    counts = {}
    for effect in effects:
        counts[effect["type"]] = counts.get(effect["type"], 0) + 1
    left = database.execute_sql("SELECT COUNT(*) FROM ad_group_audience WHERE audience_id = ?",
                                [fixture["audience"]]).fetchone()[0]
    active = database.execute_sql("SELECT COUNT(*) FROM audience_share WHERE audience_id = ? AND status = 'active'",
                                  [fixture["audience"]]).fetchone()[0]
    events = database.execute_sql("SELECT COUNT(*) FROM event WHERE audience_id = ? AND type IN"
                                  " ('end_share', 'disconnect_audience', 'remove_from_list')",
                                  [fixture["audience"]]).fetchone()[0]
    return {"seconds": seconds, "effects": counts, "events_recorded": events,
            "targeting_rows_left": left, "active_shares_left": active,
            "complete": left == 0 and active == 0 and events == len(effects)
            and counts.get("disconnect_audience", 0) == fixture["ad_groups"]}

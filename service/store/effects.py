"""Side effects: planned from the policy's decision, applied in set-based SQL.

The policy says *which* effects an action carries (the effects column of the allow
line that decided); this module works out *what* they touch and applies them inside the
action's transaction, recording one event per effect.
"""

from __future__ import annotations

import contextlib
import contextvars
import json

from audience_authz.store import budget
from audience_authz.store.db import insert_rows
from audience_authz.store.locks import lock_ad_groups, lock_event_feed
from audience_authz.store.models import database, utcnow

_CHUNK = 500
PROPAGATE_CHUNK = 100
"""Recipients named by one propagate_update effect (and its event): an update of an
audience with more recipients is several effects, so no event grows with the number of
recipients (each event stays a few tens of kilobytes at most, and a feed page can hold it)."""


def _recipients_clause(one_recipient: str | None) -> tuple[str, list]:
    p = database.obj.param
    sql = (f"SELECT recipient_account_id FROM audience_share"
           f" WHERE audience_id = {p} AND status = 'active'")
    return (sql + f" AND recipient_account_id = {p}", [one_recipient]) if one_recipient else (sql, [])


def _affected_recipients(req, decision, gathered) -> str | None:
    """Whose share ends: one recipient, or (None) every recipient."""
    if req.action == "delete" and gathered.relation == "recipient":
        return req.principal
    if req.action == "stop_sharing":
        return req.target_account_id
    return None


def plan(req, decision, gathered) -> list[dict]:
    """The effects of an allowed action, in the order they apply."""
    names = {name for name, _ in decision.effects}
    audience_id = req.audience_id
    one = None if "propagate_update" in names else _affected_recipients(req, decision, gathered)
    if budget.counting():
        budget.charge(_planned_size(audience_id, one, "disconnect_audience" in names))
    if "propagate_update" in names:
        recipients = active_recipients(audience_id, None)
        chunks = [recipients[i:i + PROPAGATE_CHUNK] for i in range(0, len(recipients), PROPAGATE_CHUNK)]
        if len(chunks) <= 1:
            return [{"type": "propagate_update", "audience_id": audience_id, "account_ids": recipients}]
        return [{"type": "propagate_update", "audience_id": audience_id, "account_ids": chunk,
                 "part": i + 1, "parts": len(chunks)} for i, chunk in enumerate(chunks)]
    recipients = active_recipients(audience_id, one)
    groups = _targeting_of_recipient_groups(audience_id, one) if "disconnect_audience" in names else {}
    on_empty = decision.effect_arg("disconnect_audience")
    planned: list[dict] = []
    for account_id in recipients:
        if "end_share" in names:
            planned.append({"type": "end_share", "audience_id": audience_id, "account_id": account_id})
        for ad_group_id, before in groups.get(account_id, []):
            after = {mode: [a for a in ids if a != audience_id] for mode, ids in before.items()}
            empty = not after["include"] and not after["exclude"]
            planned.append({
                "type": "disconnect_audience", "ad_group_id": ad_group_id, "account_id": account_id,
                "audience_id": audience_id, "before": before, "after": after,
                "no_audience_targeting": empty,
            })
            if on_empty == "pause" and before["include"] and not after["include"]:
                planned.append({"type": "pause_ad_group", "ad_group_id": ad_group_id,
                                "account_id": account_id, "audience_id": audience_id})
        if "remove_from_list" in names:
            planned.append({"type": "remove_from_list", "audience_id": audience_id,
                            "account_id": account_id})
    return planned


def _planned_size(audience_id: str, one: str | None, with_ad_groups: bool) -> int:
    """What a plan will touch, counted before it is built (for the request's budget):
    its recipients, and the recipients' ad groups using the audience."""
    p = database.obj.param
    recipients, params = _recipients_clause(one)
    groups = (f"(SELECT COUNT(*) FROM ad_group_audience t JOIN ad_group g ON g.id = t.ad_group_id"
              f" WHERE t.audience_id = {p} AND g.account_id IN ({recipients}))") if with_ad_groups else "0"
    sql = f"SELECT (SELECT COUNT(*) FROM ({recipients}) AS r), {groups}"
    args = [audience_id, *params] + ([audience_id, audience_id, *params] if with_ad_groups else [])
    n_recipients, n_groups = database.execute_sql(sql, args).fetchone()
    return int(n_recipients) + int(n_groups)


def active_recipients(audience_id: str, one: str | None) -> list[str]:
    sql, params = _recipients_clause(one)
    rows = database.execute_sql(sql + " ORDER BY recipient_account_id", [audience_id, *params])
    return [r[0] for r in rows]


def _targeting_of_recipient_groups(audience_id: str, one: str | None) -> dict[str, list]:
    """account -> [(ad group, {include: [...], exclude: [...]})] for recipients' groups using
    it, read under the groups' locks (what is read here is written back as their ``after``)."""
    p = database.obj.param
    recipients, params = _recipients_clause(one)
    lock_ad_groups(f"SELECT t.ad_group_id FROM ad_group_audience t JOIN ad_group g ON g.id = t.ad_group_id"
                   f" WHERE t.audience_id = {p} AND g.account_id IN ({recipients})", [audience_id, audience_id, *params])
    sql = f"""
        SELECT g.account_id, g.id, x.mode, x.audience_id
        FROM ad_group_audience t
        JOIN ad_group g ON g.id = t.ad_group_id
        JOIN ad_group_audience x ON x.ad_group_id = g.id
        WHERE t.audience_id = {p} AND g.account_id IN ({recipients})
        ORDER BY g.account_id, g.id, x.mode, x.position"""
    groups: dict[str, dict[str, dict]] = {}
    for account_id, ad_group_id, mode, member in database.execute_sql(sql, [audience_id, audience_id, *params]):
        targeting = groups.setdefault(account_id, {}).setdefault(
            ad_group_id, {"include": [], "exclude": []})
        targeting[mode].append(member)
    return {acc: list(by_group.items()) for acc, by_group in groups.items()}


def attached_ad_groups(audience_id: str, account_id: str, limit: int = 100) -> list[str]:
    """The first ``limit`` ad groups of ``account_id`` that include or exclude the audience
    (fixed SQL: it answers a deny on the authorize path)."""
    p = database.obj.param
    rows = database.execute_sql(
        f"SELECT t.ad_group_id FROM ad_group_audience t JOIN ad_group g ON g.id = t.ad_group_id"
        f" WHERE t.audience_id = {p} AND g.account_id = {p} ORDER BY t.ad_group_id LIMIT {p}",
        [audience_id, account_id, limit])
    return [r[0] for r in rows]


def apply(planned: list[dict], *, actor: str, stop_action: str, decision_id: str) -> None:
    """Apply planned effects in set-based statements and record each as an event."""
    apply_rows(planned, actor=actor, stop_action=stop_action)
    record_applied(planned, actor=actor, stop_action=stop_action, decision_id=decision_id)


def apply_rows(planned: list[dict], *, actor: str, stop_action: str) -> None:
    """The row changes of ``apply`` alone (an action applying several decisions' effects
    changes all rows first, and records events last: the event feed's lock comes last).

    Each statement takes a chunk of the planned ids at once (``IN (...)`` lists of up to
    ``_CHUNK``), written as fixed SQL: for 10,000 ad groups that is 20 statements per kind.
    """
    now = utcnow()
    p = database.obj.param
    by_type: dict[str, list[dict]] = {}
    for effect in planned:
        by_type.setdefault(effect["type"], []).append(effect)
    for audience_id, ad_groups in _ids_by_audience(by_type.get("disconnect_audience", []), "ad_group_id"):
        for chunk in _chunks(ad_groups):
            marks = ", ".join([p] * len(chunk))
            database.execute_sql(f"DELETE FROM ad_group_audience WHERE audience_id = {p}"
                                 f" AND ad_group_id IN ({marks})", [audience_id, *chunk])
            database.execute_sql(f"UPDATE ad_group SET updated_at = {p} WHERE id IN ({marks})", [now, *chunk])
    for chunk in _chunks(sorted({e["ad_group_id"] for e in by_type.get("pause_ad_group", [])})):
        database.execute_sql(f"UPDATE ad_group SET status = 'paused' WHERE id IN ({', '.join([p] * len(chunk))})",
                             chunk)
    for audience_id, accounts in _ids_by_audience(by_type.get("end_share", []), "account_id"):
        for chunk in _chunks(accounts):
            database.execute_sql(
                f"UPDATE audience_share SET status = 'stopped', stopped_at = {p}, stopped_by = {p},"
                f" stop_action = {p} WHERE audience_id = {p} AND status = 'active'"
                f" AND recipient_account_id IN ({', '.join([p] * len(chunk))})",
                [now, actor, stop_action, audience_id, *chunk])


def record_applied(planned: list[dict], *, actor: str, stop_action: str, decision_id: str) -> None:
    """The events of effects applied by ``apply_rows``."""
    record(planned, decision_id=decision_id, extra={"end_share": {"action": stop_action, "actor": actor}})


def _ids_by_audience(effects: list[dict], key: str) -> list[tuple[str, list[str]]]:
    grouped: dict[str, list[str]] = {}
    for effect in effects:
        grouped.setdefault(effect["audience_id"], []).append(effect[key])
    return list(grouped.items())


_recorded: contextvars.ContextVar[list | None] = contextvars.ContextVar("recorded_events", default=None)


@contextlib.contextmanager
def recording():
    """Collect the ids of the events recorded in the block (one attempt of an action): the
    answer points into the events feed with them."""
    ids: list[int] = []
    token = _recorded.set(ids)
    try:
        yield ids
    finally:
        _recorded.reset(token)


def effect_counts(effects: list[dict]) -> dict[str, int]:
    """How many effects of each type: the summary an answer keeps when its list is cut."""
    counts: dict[str, int] = {}
    for effect in effects:
        counts[effect["type"]] = counts.get(effect["type"], 0) + 1
    return counts


def span(ids: list[int]) -> dict | None:
    """The pointer of an answer into the events feed: its first and last event ids (read
    them with ``GET /v1/events?after=<first_id - 1>``) and how many there are."""
    return {"first_id": min(ids), "last_id": max(ids), "count": len(ids)} if ids else None


def record(items: list[dict], *, decision_id: str | None, extra: dict | None = None) -> None:
    """Append events (effects or state changes), in order."""
    now = utcnow()
    extra = extra or {}
    rows = []
    for item in items:
        payload = dict(item, **extra[item["type"]]) if item["type"] in extra else item
        rows.append((item["type"], item.get("audience_id"), item.get("account_id"), decision_id,
                     json.dumps(payload, separators=(",", ":")), now))
    if not rows:
        return
    lock_event_feed()
    ids = insert_rows("event", _EVENT_COLUMNS, rows, returning_ids=True)
    collected = _recorded.get()
    if collected is not None:
        collected.extend(ids)


_EVENT_COLUMNS = ("type", "audience_id", "account_id", "decision_id", "payload", "at")


def _chunks(items: list, size: int = _CHUNK):
    for start in range(0, len(items), size):
        yield items[start:start + size]

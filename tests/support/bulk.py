"""Building large states fast: direct bulk inserts through the service's models, with the
same rows, events and decision-log entries the API would have written (so the invariants
hold on what is built)."""

from __future__ import annotations

import json
import uuid

from audience_authz.store.models import Account, AdGroup, AdGroupAudience, DecisionLog, Event, Share, database, utcnow
from tests.support.invariants import bound

CHUNK = 400


def _insert(model, rows: list[dict]) -> None:
    for start in range(0, len(rows), CHUNK):
        model.insert_many(rows[start:start + CHUNK]).execute()


def _decision(principal: str, action: str, resource: dict, now) -> dict:
    return {"decision_id": uuid.uuid4().hex, "at": now, "principal": principal, "action": action,
            "resource": json.dumps(resource), "decision": "allow", "reasons": "[]",
            "policy_version": "bulk", "relation": "owner", "facts": "{}", "rule_line": None}


def fan_out(database_url: str, *, owner: str, business_center: str, shared: list[str], prefix: str,
            recipients: int) -> list[str]:
    """``recipients`` new accounts in ``business_center``, each receiving every audience of
    ``shared`` (owned by ``owner``) and owning one ad group that targets them: even groups
    include all of ``shared``, odd ones include the first and exclude the rest. Returns the
    ad group ids."""
    now = utcnow()
    accounts = [f"{prefix}_r{i}" for i in range(recipients)]
    decisions, shares, events, groups, targeting = [], [], [], [], []
    for i, account in enumerate(accounts):
        for audience in shared:
            d = _decision(owner, "share", {"audience_id": audience, "target_account_id": account}, now)
            decisions.append(d)
            shares.append({"audience": audience, "recipient_account": account, "status": "active",
                           "created_at": now, "created_by": owner})
            events.append({"type": "share_created", "audience_id": audience, "account_id": account,
                           "decision_id": d["decision_id"], "at": now, "payload": json.dumps({
                               "type": "share_created", "audience_id": audience, "account_id": account,
                               "action": "share", "actor": owner})})
        ad_group = f"{prefix}_g{i}"
        include, exclude = (shared, []) if i % 2 == 0 else (shared[:1], shared[1:])
        d = _decision(account, "edit_ad_group", {"ad_group_id": ad_group}, now)
        decisions.append(d)
        groups.append({"id": ad_group, "account": account, "name": f"group {i}", "updated_at": now})
        targeting += [{"ad_group": ad_group, "audience": a, "mode": mode, "position": p}
                      for mode, ids in (("include", include), ("exclude", exclude)) for p, a in enumerate(ids)]
        events.append({"type": "ad_group_upserted", "audience_id": None, "account_id": account,
                       "decision_id": d["decision_id"], "at": now, "payload": json.dumps({
                           "type": "ad_group_upserted", "ad_group_id": ad_group, "account_id": account,
                           "name": f"group {i}", "include": include, "exclude": exclude, "created": True})})
    with bound(database_url), database.atomic():
        _insert(Account, [{"id": a, "name": a, "business_center": business_center} for a in accounts])
        _insert(DecisionLog, decisions)
        _insert(Share, shares)
        _insert(AdGroup, groups)
        _insert(AdGroupAudience, targeting)
        _insert(Event, events)
    return [g["id"] for g in groups]

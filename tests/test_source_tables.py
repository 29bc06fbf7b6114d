"""The source's two tables, through the HTTP API (in process, and against a live server on
PostgreSQL in the full tier)."""

from __future__ import annotations

import pytest

from tests.support import world_factory

# (relation, action) -> allowed, as the source's "Owner and Recipient Access" table says
MATRIX = {
    "edit": (True, False),
    "apply": (True, True),
    "delete": (True, True),
    "share": (True, False),
    "stop_sharing": (True, False),
    "create_lookalike": (True, False),
    "refresh_lookalike": (True, False),
}


@pytest.mark.parametrize("action", sorted(MATRIX))
def test_owner_and_recipient_access_table_via_authorize(api, action):
    w = world_factory(api)
    api.ok(api.put(f"/v1/ad-groups/{w.ag_o}", {"name": "owner's"}, account=w.owner))
    api.ok(api.put(f"/v1/ad-groups/{w.ag_r}", {"name": "recipient's"}, account=w.recipient))
    api.ok(api.post(f"/v1/audiences/{w.A}/lookalikes", {"id": w.L, "name": "lal"}, account=w.owner), 201)
    api.ok(api.post(f"/v1/audiences/{w.L}/shares", {"account_ids": [w.recipient]}, account=w.owner), 201)
    # refresh applies to the lookalike, every other action to custom audience A
    audience = w.L if action == "refresh_lookalike" else w.A
    owner_ctx = {"share": {"target_account_id": w.peer}, "stop_sharing": {"target_account_id": w.recipient},
                 "apply": {"ad_group_id": w.ag_o}}.get(action, {})
    recipient_ctx = {"share": {"target_account_id": w.peer}, "stop_sharing": {"target_account_id": w.recipient},
                     "apply": {"ad_group_id": w.ag_r}}.get(action, {})
    owner_allowed, recipient_allowed = MATRIX[action]
    owner = api.ok(api.authorize(w.owner, action, audience, **owner_ctx))
    recipient = api.ok(api.authorize(w.recipient, action, audience, **recipient_ctx))
    assert owner["decision"] == ("allow" if owner_allowed else "deny"), owner
    assert recipient["decision"] == ("allow" if recipient_allowed else "deny"), recipient
    if not recipient_allowed:
        expected = "reshare_forbidden" if action == "share" else "recipient_action_forbidden"
        assert [r["code"] for r in recipient["reasons"]] == [expected]
    # an account with no relation may do nothing
    stranger = api.ok(api.authorize(w.peer, action, audience, **recipient_ctx))
    assert stranger["decision"] == "deny"
    assert stranger["reasons"][0]["code"] == "no_access"


def test_actions_listed_per_relation_match_the_table(api):
    w = world_factory(api)
    owner = api.ok(api.get(f"/v1/audiences/{w.A}", account=w.owner))
    recipient = api.ok(api.get(f"/v1/audiences/{w.A}", account=w.recipient))
    assert owner["relation"] == "owner" and recipient["relation"] == "recipient"
    assert owner["actions"] == ["view", "edit", "apply", "delete", "share", "stop_sharing", "create_lookalike"]
    assert recipient["actions"] == ["view", "apply", "delete"]


# Owner stops sharing A: the targeting that remains in the recipient's ad groups.
DISCONNECT_TABLE = [
    ("include A", ["A"], [], [], [], True),
    ("exclude A", [], ["A"], [], [], True),
    ("include ABC", ["A", "B", "C"], [], ["B", "C"], [], False),
    ("exclude ABC", [], ["A", "B", "C"], [], ["B", "C"], False),
    ("include A exclude B", ["A"], ["B"], [], ["B"], False),
]


@pytest.mark.parametrize("how", ["one recipient", "all recipients", "owner deletes"])
def test_stop_sharing_disconnects_as_the_source_table_says(api, how):
    w = world_factory(api)
    groups = {}
    for label, include, exclude, *_ in DISCONNECT_TABLE:
        ag = w.id("ag_" + label.replace(" ", "_"))
        groups[label] = ag
        api.ok(api.put(f"/v1/ad-groups/{ag}", {"name": label, "include": [w.id(a) for a in include],
                                                "exclude": [w.id(a) for a in exclude]}, account=w.recipient))
    # what authorize announces is exactly what the action then applies
    if how == "owner deletes":
        planned = api.ok(api.authorize(w.owner, "delete", w.A))["effects"]
        result = api.ok(api.delete(f"/v1/audiences/{w.A}", account=w.owner))
        assert result["deleted"] is True
    else:
        ctx = {"target_account_id": w.recipient} if how == "one recipient" else {}
        planned = api.ok(api.authorize(w.owner, "stop_sharing", w.A, **ctx))["effects"]
        path = f"/v1/audiences/{w.A}/shares" + (f"/{w.recipient}" if how == "one recipient" else "")
        result = api.ok(api.delete(path, account=w.owner))
    assert result["effects"] == planned
    disconnects = {e["ad_group_id"]: e for e in result["effects"] if e["type"] == "disconnect_audience"}
    assert set(disconnects) == set(groups.values())
    for label, include, exclude, after_include, after_exclude, nothing_left in DISCONNECT_TABLE:
        effect = disconnects[groups[label]]
        assert effect["before"] == {"include": [w.id(a) for a in include], "exclude": [w.id(a) for a in exclude]}
        assert effect["after"] == {"include": [w.id(a) for a in after_include],
                                   "exclude": [w.id(a) for a in after_exclude]}
        assert effect["no_audience_targeting"] is nothing_left
        group = api.ok(api.get(f"/v1/ad-groups/{groups[label]}", account=w.recipient))
        assert group["include"] == effect["after"]["include"]
        assert group["exclude"] == effect["after"]["exclude"]
        assert group["no_audience_targeting"] is nothing_left
        assert group["status"] == "enabled"  # the shipped policy broadens, it does not pause
    types = [e["type"] for e in result["effects"]]
    assert types[0] == "end_share" and types[-1] == "remove_from_list"
    # A is gone from the recipient's list and can no longer be applied
    listed = api.ok(api.get(f"/v1/accounts/{w.recipient}/audiences", account=w.recipient))
    assert w.A not in [a["id"] for a in listed["audiences"]]
    again = api.put(f"/v1/ad-groups/{groups['include A']}", {"name": "x", "include": [w.A]}, account=w.recipient)
    assert again.status == 403
    # no longer shared (or deleted): to the recipient now a stranger, as if unknown (docs/visibility.md)
    assert again.codes == ["unknown_audience"]

"""`include_effects: false`: the decision alone, for a button that asks whether it may
show itself. Same decision and reasons; no effects planned, none answered."""

from __future__ import annotations


def _check(account: str, action: str, audience: str, **extra) -> dict:
    return {"principal": {"account_id": account}, "action": action, "resource": {"audience_id": audience}, **extra}


def test_a_decision_without_effects_decides_the_same(api, world):
    w = world
    full = api.ok(api.post("/v1/authorize", _check(w.owner, "delete", w.A)))
    assert full["decision"] == "allow" and full["effects"] and full["effect_counts"]  # A is shared: delete ends it
    only = api.ok(api.post("/v1/authorize", _check(w.owner, "delete", w.A, include_effects=False)))
    assert only["decision"] == "allow" and only["effects"] == [] and only["effect_counts"] == {}
    assert only["policy_version"] == full["policy_version"] and only["decision_id"] != full["decision_id"]

    denied = api.ok(api.post("/v1/authorize", _check(w.peer, "delete", w.A)))
    denied_only = api.ok(api.post("/v1/authorize", _check(w.peer, "delete", w.A, include_effects=False)))
    assert denied_only["decision"] == denied["decision"] == "deny"
    assert denied_only["reasons"] == denied["reasons"]


def test_a_batch_takes_it_per_check(api, world):
    w = world
    checks = [_check(w.owner, "delete", w.A, include_effects=False), _check(w.owner, "delete", w.B),
              _check(w.owner, "stop_sharing", w.C, include_effects=False)]
    results = api.ok(api.post("/v1/authorize/batch", {"checks": checks}))["results"]
    assert [r["decision"] for r in results] == ["allow", "allow", "allow"]
    assert [bool(r["effects"]) for r in results] == [False, True, False]


def test_include_effects_must_be_a_boolean(api, world):
    r = api.post("/v1/authorize", _check(world.owner, "delete", world.A, include_effects="no"))
    assert r.status == 400 and r.body["error"]["code"]

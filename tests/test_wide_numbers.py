"""Every number the API accepts is stored, on both databases: member counts up to 10^12
(PostgreSQL's 32-bit integer once answered 500 past 2^31-1), and arithmetic on counts
saturates at that maximum instead of failing after the policy allowed the action."""

from __future__ import annotations

from audience_authz.vocabulary import MAX_MEMBERS

INT32_MAX = 2**31 - 1


def _create(api, w, name: str, members: int) -> dict:
    return api.ok(api.post("/v1/audiences", {"id": w.id(name), "name": name, "source": "customer_file",
                                              "member_count": members}, account=w.owner), 201)["audience"]


def _members(api, w, audience_id: str) -> int:
    return api.ok(api.get(f"/v1/audiences/{audience_id}", account=w.owner))["member_count"]


def test_member_counts_up_to_the_api_maximum_are_stored(api, world):
    w = world
    for name, members in (("three_billion", 3_000_000_000), ("max", MAX_MEMBERS), ("int32", INT32_MAX)):
        assert _create(api, w, name, members)["member_count"] == members
        assert _members(api, w, w.id(name)) == members
    past = api.post("/v1/audiences", {"name": "too many", "source": "customer_file",
                                      "member_count": MAX_MEMBERS + 1}, account=w.owner)
    assert past.status == 400 and past.body["error"]["code"] == "invalid_request"


def test_adding_members_past_32_bits_and_at_the_maximum(api, world):
    w = world
    _create(api, w, "edge", INT32_MAX)
    added = api.ok(api.patch(f"/v1/audiences/{w.id('edge')}", {"members": {"op": "add", "count": 1}},
                             account=w.owner))
    assert added["audience"]["member_count"] == INT32_MAX + 1 == _members(api, w, w.id("edge"))
    _create(api, w, "full", MAX_MEMBERS)
    capped = api.ok(api.patch(f"/v1/audiences/{w.id('full')}", {"members": {"op": "add", "count": 1}},
                              account=w.owner))
    assert capped["audience"]["member_count"] == MAX_MEMBERS == _members(api, w, w.id("full"))
    huge = api.ok(api.patch(f"/v1/audiences/{w.id('full')}", {"members": {"op": "add", "count": MAX_MEMBERS}},
                            account=w.owner))
    assert huge["audience"]["member_count"] == MAX_MEMBERS
    floor = api.ok(api.patch(f"/v1/audiences/{w.id('edge')}", {"members": {"op": "remove", "count": MAX_MEMBERS}},
                             account=w.owner))
    assert floor["audience"]["member_count"] == 0


def test_lookalikes_of_huge_seeds_saturate_at_the_maximum(api, world):
    w = world
    _create(api, w, "seed", 300_000_000)  # ten times it is past 2^31 and within the maximum
    made = api.ok(api.post(f"/v1/audiences/{w.id('seed')}/lookalikes", {"id": w.id("lal"), "name": "lal"},
                           account=w.owner), 201)["audience"]
    assert made["member_count"] == 3_000_000_000 == _members(api, w, w.id("lal"))
    _create(api, w, "max_seed", MAX_MEMBERS)
    capped = api.ok(api.post(f"/v1/audiences/{w.id('max_seed')}/lookalikes", {"id": w.id("lal_max"), "name": "l"},
                             account=w.owner), 201)["audience"]
    assert capped["member_count"] == MAX_MEMBERS == _members(api, w, w.id("lal_max"))
    api.ok(api.patch(f"/v1/audiences/{w.id('seed')}", {"members": {"op": "replace", "count": MAX_MEMBERS}},
                     account=w.owner))
    refreshed = api.ok(api.post(f"/v1/audiences/{w.id('lal')}/refresh", account=w.owner))
    assert refreshed["audience"]["member_count"] == MAX_MEMBERS == _members(api, w, w.id("lal"))

"""A share whose sharing scope stops holding (an account moves to another Business Center or
to none, a Business Center loses its allowlisting) ends in the same request, as if its
owner had stopped it; shares still in scope stay."""

from __future__ import annotations

from tests.support import world_factory
from tests.support.invariants import check_invariants


def _recipients(api, w, audience):
    return [s["account_id"] for s in api.ok(api.get(f"/v1/audiences/{audience}/shares", account=w.owner))["shares"]]


def test_recipient_moving_out_of_the_owners_business_center_loses_its_shares(api, server):
    w = world_factory(api)
    api.ok(api.put(f"/v1/ad-groups/{w.ag}", {"name": "g", "include": [w.A, w.B], "exclude": [w.C]},
                   account=w.recipient))
    api.ok(api.post(f"/v1/audiences/{w.A}/shares", {"account_ids": [w.peer]}, account=w.owner), 201)
    renamed = api.ok(api.put(f"/v1/accounts/{w.recipient}", {"name": "renamed", "business_center_id": w.bc}))
    assert renamed["effects"] == []  # same Business Center: nothing changes
    moved = api.ok(api.put(f"/v1/accounts/{w.recipient}", {"name": "moved", "business_center_id": w.bc2}))
    ended = sorted(e["audience_id"] for e in moved["effects"] if e["type"] == "end_share")
    assert ended == sorted([w.A, w.B, w.C])
    assert {e["reason"] for e in moved["effects"]} == {"not_same_business_center"}
    group = api.ok(api.get(f"/v1/ad-groups/{w.ag}", account=w.recipient))
    assert (group["include"], group["exclude"], group["no_audience_targeting"]) == ([], [], True)
    assert _recipients(api, w, w.A) == [w.peer]  # the peer, still in the BC, keeps its share
    log = api.ok(api.get(f"/v1/audiences/{w.A}/share-log", account=w.owner))["entries"]
    assert (log[-1]["account_id"], log[-1]["action"]) == (w.recipient, "scope_ended")
    assert api.authorize(w.recipient, "apply", w.A, ad_group_id=w.ag).codes == ["no_access"]
    assert check_invariants(server.database_url, api) == []


def test_owner_leaving_business_centers_ends_every_share_it_made(api, server):
    w = world_factory(api)
    moved = api.ok(api.put(f"/v1/accounts/{w.owner}", {"name": "owner", "business_center_id": None}))
    assert {e["reason"] for e in moved["effects"]} == {"account_not_in_business_center"}
    assert all(_recipients(api, w, a) == [] for a in (w.A, w.B, w.C))
    assert check_invariants(server.database_url, api) == []


def test_business_center_losing_its_allowlisting_ends_only_cross_bc_shares(api, server):
    w = world_factory(api)
    api.ok(api.put(f"/v1/business-centers/{w.bc}", {"name": "BC", "cross_bc_allowlisted": True}))
    api.ok(api.post(f"/v1/audiences/{w.A}/shares", {"account_ids": [w.other]}, account=w.owner), 201)
    api.ok(api.put(f"/v1/ad-groups/{w.ag}", {"name": "g", "include": [w.A]}, account=w.other))
    # an account moving into another BC keeps shares while the owner's BC is allowlisted
    assert api.ok(api.put(f"/v1/accounts/{w.peer}", {"name": "p", "business_center_id": w.bc2}))["effects"] == []
    revoked = api.ok(api.put(f"/v1/business-centers/{w.bc}", {"name": "BC", "cross_bc_allowlisted": False}))
    assert sorted(e["account_id"] for e in revoked["effects"] if e["type"] == "end_share") == [w.other]
    assert _recipients(api, w, w.A) == [w.recipient]
    assert api.ok(api.get(f"/v1/ad-groups/{w.ag}", account=w.other))["include"] == []
    assert check_invariants(server.database_url, api) == []


def test_a_put_that_leaves_out_a_scope_field_keeps_the_stored_value(api, server):
    """A narrowing of the sharing scope never happens by omission: a PUT with only a name
    renames, and the allowlisting, the account's Business Center and every share stay."""
    w = world_factory(api)
    api.ok(api.put(f"/v1/business-centers/{w.bc}", {"name": "BC", "cross_bc_allowlisted": True}))
    api.ok(api.post(f"/v1/audiences/{w.A}/shares", {"account_ids": [w.other]}, account=w.owner), 201)
    renamed = api.ok(api.put(f"/v1/business-centers/{w.bc}", {"name": "BC renamed"}))
    assert (renamed["name"], renamed["cross_bc_allowlisted"], renamed["effects"]) == ("BC renamed", True, [])
    for account in (w.owner, w.recipient, w.other):
        before = api.ok(api.get(f"/v1/accounts/{account}/audiences", account=account))
        kept = api.ok(api.put(f"/v1/accounts/{account}", {"name": f"{account} renamed"}))
        assert (kept["name"], kept["effects"]) == (f"{account} renamed", [])
        assert kept["business_center_id"] == {w.other: w.bc2}.get(account, w.bc)
        assert api.ok(api.get(f"/v1/accounts/{account}/audiences", account=account)) == before
    assert sorted(_recipients(api, w, w.A)) == sorted([w.recipient, w.other])
    assert api.authorize(w.owner, "share", w.B, target_account_id=w.other).body["decision"] == "allow"
    # named, the same changes do narrow the scope
    revoked = api.ok(api.put(f"/v1/business-centers/{w.bc}", {"name": "BC", "cross_bc_allowlisted": False}))
    assert [e["account_id"] for e in revoked["effects"] if e["type"] == "end_share"] == [w.other]
    left = api.ok(api.put(f"/v1/accounts/{w.recipient}", {"name": "r", "business_center_id": None}))
    assert left["business_center_id"] is None
    assert sorted(e["audience_id"] for e in left["effects"] if e["type"] == "end_share") == sorted([w.A, w.B, w.C])
    assert check_invariants(server.database_url, api) == []


def test_a_new_entity_created_without_scope_fields_has_the_narrowest_scope(api, uid):
    created = api.ok(api.put(f"/v1/business-centers/bc_{uid}", {"name": "new"}))
    assert created["cross_bc_allowlisted"] is False
    account = api.ok(api.put(f"/v1/accounts/acc_{uid}", {"name": "new"}))
    assert account["business_center_id"] is None
    # and null is not a value of the allowlisting
    assert api.put(f"/v1/business-centers/bc_{uid}", {"name": "new", "cross_bc_allowlisted": None}).status == 400

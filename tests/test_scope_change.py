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
    moved = api.ok(api.put(f"/v1/accounts/{w.owner}", {"name": "owner"}))  # to no Business Center
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

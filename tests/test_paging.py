"""Every list is paged (cursor ``after``, bounded ``limit``) and every event bounded: an
owner sharing into an account's list cannot make it answer 500 forever, and an update of an
audience with many recipients is several propagate_update events, not one unbounded one."""

from __future__ import annotations

from audience_authz.store.effects import PROPAGATE_CHUNK
from tests.support import last_event_id


def _pages(api, path: str, field: str, key: str, limit: int, account: str) -> list[list[str]]:
    pages, after = [], None
    while True:
        query = f"?limit={limit}" + (f"&after={after}" if after else "")
        body = api.ok(api.get(path + query, account=account))
        pages.append([entry[key] for entry in body[field]])
        after = body["next_after"]
        if after is None:
            return pages
        assert after == pages[-1][-1]
        assert len(pages) < 100


def _accounts(api, w, n: int) -> list[str]:
    ids = [w.id(f"r{i:03d}") for i in range(n)]
    for account in ids:
        api.ok(api.put(f"/v1/accounts/{account}", {"name": account, "business_center_id": w.bc}))
    return ids


def test_an_accounts_audience_list_is_paged(api, world):
    w = world
    api.ok(api.post(f"/v1/accounts/{w.peer}/terms-acceptance", account=w.peer))
    own = [w.id(f"own{i:02d}") for i in range(12)]
    for audience in own:
        api.ok(api.post("/v1/audiences", {"id": audience, "name": "a", "source": "customer_file"},
                        account=w.recipient), 201)
    received = [w.id(f"got{i:02d}") for i in range(11)]
    for audience in received:  # shared into the list by another owner
        api.ok(api.post("/v1/audiences", {"id": audience, "name": "a", "source": "customer_file"},
                        account=w.peer), 201)
        api.ok(api.post(f"/v1/audiences/{audience}/shares", {"account_ids": [w.recipient]}, account=w.peer), 201)
    path = f"/v1/accounts/{w.recipient}/audiences"
    whole = api.ok(api.get(path, account=w.recipient))  # the default page holds them all
    everything = [a["id"] for a in whole["audiences"]]  # in the database's order of ids
    assert sorted(everything) == sorted([w.A, w.B, w.C, *own, *received]) and whole["next_after"] is None
    pages = _pages(api, path, "audiences", "id", 5, w.recipient)
    assert [len(p) for p in pages] == [5, 5, 5, 5, 5, 1]
    assert [a for p in pages for a in p] == everything
    middle = api.ok(api.get(f"{path}?after={everything[5]}&limit=3", account=w.recipient))
    assert [a["id"] for a in middle["audiences"]] == everything[6:9]
    for bad in ("limit=0", "limit=1001", "limit=x", "after=", "after=a%2Fb", "page=2"):
        r = api.get(f"{path}?{bad}", account=w.recipient)
        assert r.status == 400 and r.body["error"]["code"] == "invalid_request", (bad, r.body)


def test_an_accounts_audience_list_filtered_by_action_is_what_the_policy_allows(api, world):
    """``?action=``: only the audiences whose allowed actions (as the unfiltered list gives
    them) hold it; pages look at ``limit`` audiences each, so following ``next_after``
    gives the same audiences in the same order whatever the page size."""
    w = world
    api.ok(api.post(f"/v1/accounts/{w.recipient}/terms-acceptance", account=w.recipient))
    for i in range(4):
        api.ok(api.post("/v1/audiences", {"id": w.id(f"mine{i}"), "name": "a", "source": "customer_file"},
                        account=w.recipient), 201)
    path = f"/v1/accounts/{w.recipient}/audiences"
    whole = api.ok(api.get(path, account=w.recipient))["audiences"]
    kinds = set()
    for action in ("apply", "share", "edit", "view"):
        expected = [a["id"] for a in whole if action in a["actions"]]
        kinds.add(len(expected) == len(whole))
        assert [a["id"] for a in api.ok(api.get(f"{path}?action={action}", account=w.recipient))["audiences"]] \
            == expected
        paged, after = [], ""
        for _ in range(50):
            page = api.ok(api.get(f"{path}?action={action}&limit=2&after={after}" if after else
                                  f"{path}?action={action}&limit=2", account=w.recipient))
            assert len(page["audiences"]) <= 2
            paged += [a["id"] for a in page["audiences"]]
            after = page["next_after"]
            if after is None:
                break
        assert paged == expected
    assert kinds == {True, False}  # some actions hold on every audience of the list, some not
    for bad in ("action=fly", "action=", "action=accept_terms"):
        r = api.get(f"{path}?{bad}", account=w.recipient)
        assert r.status == 400 and r.body["error"]["code"] == "invalid_request", (bad, r.body)


def test_an_audiences_recipients_are_paged(api, world):
    w = world
    recipients = _accounts(api, w, 23)
    api.ok(api.post(f"/v1/audiences/{w.B}/shares", {"account_ids": recipients}, account=w.owner), 201)
    pages = _pages(api, f"/v1/audiences/{w.B}/shares", "shares", "account_id", 10, w.owner)
    assert [len(p) for p in pages] == [10, 10, 4]
    paged = [a for p in pages for a in p]
    assert sorted(paged) == sorted([w.recipient, *recipients])
    assert paged == [s["account_id"] for s in api.ok(api.get(f"/v1/audiences/{w.B}/shares", account=w.owner))["shares"]]
    r = api.get(f"/v1/audiences/{w.B}/shares?limit=5000", account=w.owner)
    assert r.status == 400


def test_an_update_reaches_many_recipients_in_bounded_events(api, world):
    w = world
    recipients = _accounts(api, w, 2 * PROPAGATE_CHUNK + 10)
    for start in range(0, len(recipients), 100):
        api.ok(api.post(f"/v1/audiences/{w.C}/shares", {"account_ids": recipients[start:start + 100]},
                        account=w.owner), 201)
    before = last_event_id(api)
    edited = api.ok(api.patch(f"/v1/audiences/{w.C}", {"name": "renamed"}, account=w.owner))
    parts = [e for e in edited["effects"] if e["type"] == "propagate_update"]
    assert len(parts) == 3 and edited["effect_counts"]["propagate_update"] == 3
    assert all(len(p["account_ids"]) <= PROPAGATE_CHUNK for p in parts)
    assert [(p["part"], p["parts"]) for p in parts] == [(1, 3), (2, 3), (3, 3)]
    assert sorted(a for p in parts for a in p["account_ids"]) == sorted([w.recipient, *recipients])
    events = api.ok(api.get(f"/v1/events?after={before}&limit=1000"))["events"]
    assert [e["payload"]["account_ids"] for e in events if e["type"] == "propagate_update"] == [
        p["account_ids"] for p in parts]
    assert edited["events"]["last_id"] == events[-1]["id"] and edited["events"]["count"] == len(events)

"""Every rule of SPEC §3 and every reason code, through the HTTP API (the `api` fixture: in
process, and against a live server on PostgreSQL in the full tier)."""

from __future__ import annotations

from tests.support import last_event_id, world_factory


def unknown(response) -> str | None:
    """The kind an answer says is unknown ("audience", "ad_group"), or None."""
    if response.status == 404 and isinstance(response.body, dict):
        return response.body["error"]["code"].removeprefix("unknown_")
    return None


def share(api, w, audience, targets, account=None):
    return api.post(f"/v1/audiences/{audience}/shares", {"account_ids": targets}, account=account or w.owner)


# -- rule 1: sharing scope ----------------------------------------------------------------

def test_same_business_center_share_is_allowed_and_appears_in_the_recipients_list(api):
    w = world_factory(api)
    body = api.ok(share(api, w, w.A, [w.peer]), 201)
    assert body["shared_with"] == [w.peer]
    assert sorted(body["recipients"]) == sorted([w.recipient, w.peer])
    listed = api.ok(api.get(f"/v1/accounts/{w.peer}/audiences", account=w.peer))
    entry = next(a for a in listed["audiences"] if a["id"] == w.A)
    assert entry["relation"] == "recipient" and entry["actions"] == ["view", "apply", "delete"]


def test_cross_business_center_needs_the_owners_allowlist(api):
    w = world_factory(api)
    denied = share(api, w, w.A, [w.other])
    assert denied.status == 403
    assert denied.body["decision"] == "deny"
    assert denied.body["reasons"][0]["code"] == "not_same_business_center"
    assert denied.body["reasons"][0]["account_id"] == w.other
    api.ok(api.put(f"/v1/business-centers/{w.bc}", {"name": "BC", "cross_bc_allowlisted": True}))
    api.ok(share(api, w, w.A, [w.other]), 201)


def test_an_account_in_no_business_center_can_neither_receive_nor_share(api):
    w = world_factory(api)
    assert share(api, w, w.A, [w.nobc]).codes == ["account_not_in_business_center"]
    # the no-BC account owns an audience: it cannot share it with anyone
    api.ok(api.post(f"/v1/accounts/{w.nobc}/terms-acceptance", account=w.nobc))
    api.ok(api.post("/v1/audiences", {"id": w.N, "name": "n", "source": "partner"}, account=w.nobc), 201)
    assert share(api, w, w.N, [w.owner], account=w.nobc).codes == ["account_not_in_business_center"]
    assert "share" not in api.ok(api.get(f"/v1/audiences/{w.N}", account=w.nobc))["actions"]


# -- rule 2: shareable audiences, self, already shared -----------------------------------

def test_only_the_five_sources_and_lookalikes_are_shareable(api):
    w = world_factory(api)
    for source in ("engagement", "app_activity", "website_traffic", "customer_file", "partner"):
        aid = w.id("src_" + source)
        api.ok(api.post("/v1/audiences", {"id": aid, "name": source, "source": source}, account=w.owner), 201)
        api.ok(share(api, w, aid, [w.peer]), 201)
    api.ok(api.post("/v1/audiences", {"id": w.LG, "name": "leads", "source": "lead_generation"},
                    account=w.owner), 201)
    assert share(api, w, w.LG, [w.peer]).codes == ["audience_not_shareable"]
    api.ok(api.post(f"/v1/audiences/{w.A}/lookalikes", {"id": w.L, "name": "lal"}, account=w.owner), 201)
    api.ok(share(api, w, w.L, [w.peer]), 201)


def test_share_to_self_and_already_shared_are_denied_and_change_nothing(api):
    w = world_factory(api)
    assert share(api, w, w.A, [w.owner]).codes == ["share_to_self"]
    before = api.ok(api.get(f"/v1/audiences/{w.A}/shares", account=w.owner))
    # all or nothing: a valid target beside an already-shared one is not shared either
    denied = share(api, w, w.A, [w.peer, w.recipient])
    assert denied.status == 403
    assert [(r["code"], r["account_id"]) for r in denied.body["reasons"]] == [("already_shared", w.recipient)]
    assert api.ok(api.get(f"/v1/audiences/{w.A}/shares", account=w.owner)) == before


def test_a_deleted_audience_cannot_be_shared(api):
    w = world_factory(api, share_with_recipient=False)
    api.ok(api.delete(f"/v1/audiences/{w.A}", account=w.owner))
    assert share(api, w, w.A, [w.peer]).codes == ["audience_deleted"]


def test_unknown_target_account(api):
    w = world_factory(api)
    assert share(api, w, w.A, [w.id("ghost")]).codes == ["unknown_target_account"]


# -- rule 3: terms ------------------------------------------------------------------------

def test_first_share_needs_the_custom_audience_terms(api):
    w = world_factory(api, terms=False, share_with_recipient=False)
    assert share(api, w, w.A, [w.peer]).codes == ["terms_not_accepted"]
    assert "share" not in api.ok(api.get(f"/v1/audiences/{w.A}", account=w.owner))["actions"]
    # only the account itself may accept
    other = api.post(f"/v1/accounts/{w.owner}/terms-acceptance", account=w.peer)
    assert other.status == 403 and other.codes == ["not_account_owner"]
    accepted = api.ok(api.post(f"/v1/accounts/{w.owner}/terms-acceptance", account=w.owner))
    assert accepted["terms_accepted_at"]
    api.ok(share(api, w, w.A, [w.peer]), 201)


# -- rule 4: owner edits propagate --------------------------------------------------------

def test_owner_edits_are_seen_by_recipients_at_once(api):
    w = world_factory(api)
    api.ok(share(api, w, w.A, [w.peer]), 201)
    edited = api.ok(api.patch(f"/v1/audiences/{w.A}", {"name": "renamed", "members": {"op": "add", "count": 5}},
                              account=w.owner))
    assert edited["audience"]["revision"] == 2
    assert edited["effects"] == [{"type": "propagate_update", "audience_id": w.A,
                                  "account_ids": sorted([w.recipient, w.peer]), "revision": 2}]
    seen = api.ok(api.get(f"/v1/audiences/{w.A}", account=w.recipient))
    assert seen["name"] == "renamed" and seen["member_count"] == 5 and seen["revision"] == 2
    for op, count, expected in (("remove", 2, 3), ("replace", 40, 40), ("remove", 100, 0)):
        api.ok(api.patch(f"/v1/audiences/{w.A}", {"members": {"op": op, "count": count}}, account=w.owner))
        assert api.ok(api.get(f"/v1/audiences/{w.A}", account=w.peer))["member_count"] == expected


def test_recipient_cannot_edit_and_stranger_has_no_access(api):
    w = world_factory(api)
    assert api.patch(f"/v1/audiences/{w.A}", {"name": "x"}, account=w.recipient).codes == [
        "recipient_action_forbidden"]
    # a stranger is answered as if the audience did not exist (docs/visibility.md)
    assert unknown(api.patch(f"/v1/audiences/{w.A}", {"name": "x"}, account=w.peer)) == "audience"
    assert unknown(api.get(f"/v1/audiences/{w.A}", account=w.peer)) == "audience"
    assert api.ok(api.get(f"/v1/audiences/{w.A}", account=w.owner))["name"] == "audience A"


# -- rule 5: apply ------------------------------------------------------------------------

def test_apply_only_in_own_ad_groups_and_only_audiences_it_may_apply(api):
    w = world_factory(api)
    api.ok(api.put(f"/v1/ad-groups/{w.ag}", {"name": "g", "include": [w.A], "exclude": [w.B]}, account=w.recipient))
    # another account cannot write or read the recipient's ad group
    taken = api.put(f"/v1/ad-groups/{w.ag}", {"name": "g", "include": []}, account=w.peer)
    assert taken.status == 403 and taken.codes == ["ad_group_not_owned"]
    assert unknown(api.get(f"/v1/ad-groups/{w.ag}", account=w.peer)) == "ad_group"
    # an audience it has no relation to cannot be applied; the request changes nothing
    api.ok(api.put(f"/v1/ad-groups/{w.pg}", {"name": "peer's"}, account=w.peer))
    denied = api.put(f"/v1/ad-groups/{w.pg}", {"name": "peer's", "include": [w.A]}, account=w.peer)
    assert denied.status == 403 and denied.codes == ["unknown_audience"]  # as for an unknown audience
    assert denied.body["reasons"][0]["audience_id"] == w.A
    assert api.ok(api.get(f"/v1/ad-groups/{w.pg}", account=w.peer))["include"] == []
    # via authorize: someone else's ad group, an unknown ad group
    assert api.authorize(w.owner, "apply", w.A, ad_group_id=w.ag).codes == ["ad_group_not_owned"]
    assert api.authorize(w.owner, "apply", w.A, ad_group_id=w.id("nope")).codes == ["unknown_ad_group"]
    assert api.authorize(w.recipient, "apply", w.A, ad_group_id=w.ag).body["decision"] == "allow"


# -- rule 6: delete needs disconnection ----------------------------------------------------

def test_delete_is_refused_while_applied_in_the_deleting_accounts_ad_groups(api):
    w = world_factory(api)
    api.ok(api.put(f"/v1/ad-groups/{w.og}", {"name": "owner's", "include": [w.A]}, account=w.owner))
    denied = api.delete(f"/v1/audiences/{w.A}", account=w.owner)
    assert denied.status == 403 and denied.codes == ["applied_to_ad_groups"]
    assert denied.body["reasons"][0]["ad_group_ids"] == [w.og]
    api.ok(api.put(f"/v1/ad-groups/{w.og}", {"name": "owner's", "include": []}, account=w.owner))
    deleted = api.ok(api.delete(f"/v1/audiences/{w.A}", account=w.owner))
    assert deleted["deleted"] is True
    assert [e["type"] for e in deleted["effects"]] == ["end_share", "remove_from_list"]
    # a deleted audience allows nothing but view of its history to its owner
    assert api.ok(api.get(f"/v1/audiences/{w.A}", account=w.owner))["status"] == "deleted"
    assert api.ok(api.get(f"/v1/audiences/{w.A}", account=w.owner))["actions"] == ["view"]
    # its former recipient, whose share the delete ended, is answered as a stranger
    assert unknown(api.get(f"/v1/audiences/{w.A}", account=w.recipient)) == "audience"
    assert api.patch(f"/v1/audiences/{w.A}", {"name": "x"}, account=w.owner).codes == ["audience_deleted"]
    assert api.delete(f"/v1/audiences/{w.A}", account=w.owner).codes == ["audience_deleted"]
    log = api.ok(api.get(f"/v1/audiences/{w.A}/share-log", account=w.owner))
    assert [(e["action"], e["account_id"]) for e in log["entries"]] == [
        ("share", w.recipient), ("owner_delete", w.recipient)]


def test_recipient_delete_removes_it_from_its_own_list_only(api):
    w = world_factory(api)
    api.ok(share(api, w, w.A, [w.peer]), 201)
    api.ok(api.put(f"/v1/ad-groups/{w.rg}", {"name": "r", "exclude": [w.A]}, account=w.recipient))
    assert api.delete(f"/v1/audiences/{w.A}", account=w.recipient).codes == ["applied_to_ad_groups"]
    api.ok(api.put(f"/v1/ad-groups/{w.rg}", {"name": "r", "exclude": []}, account=w.recipient))
    removed = api.ok(api.delete(f"/v1/audiences/{w.A}", account=w.recipient))
    assert removed["removed_from_list"] is True and removed["deleted"] is False
    assert [e["type"] for e in removed["effects"]] == ["end_share", "remove_from_list"]
    assert api.ok(api.get(f"/v1/audiences/{w.A}/shares", account=w.owner))["shares"][0]["account_id"] == w.peer
    assert api.ok(api.get(f"/v1/audiences/{w.A}", account=w.owner))["status"] == "active"
    assert unknown(api.get(f"/v1/audiences/{w.A}", account=w.recipient)) == "audience"
    log = api.ok(api.get(f"/v1/audiences/{w.A}/share-log", account=w.owner))
    assert ("recipient_remove", w.recipient, w.recipient) in [
        (e["action"], e["account_id"], e["actor"]) for e in log["entries"]]


# -- rule 7: stop sharing ------------------------------------------------------------------

def test_stop_sharing_owner_only_and_only_existing_shares(api):
    w = world_factory(api)
    assert api.delete(f"/v1/audiences/{w.A}/shares/{w.recipient}", account=w.recipient).codes == [
        "recipient_action_forbidden"]
    assert api.delete(f"/v1/audiences/{w.A}/shares/{w.peer}", account=w.owner).codes == ["not_shared"]
    stopped = api.ok(api.delete(f"/v1/audiences/{w.A}/shares/{w.recipient}", account=w.owner))
    assert stopped["stopped"] == [w.recipient]
    assert api.ok(api.get(f"/v1/audiences/{w.A}/shares", account=w.owner))["shares"] == []
    log = api.ok(api.get(f"/v1/audiences/{w.A}/share-log", account=w.owner))
    assert [(e["action"], e["actor"]) for e in log["entries"]] == [("share", w.owner), ("stop", w.owner)]
    # the recipient may see neither the share list nor the log
    assert api.get(f"/v1/audiences/{w.B}/shares", account=w.recipient).codes == ["not_owner"]
    assert api.get(f"/v1/audiences/{w.B}/share-log", account=w.recipient).codes == ["not_owner"]


def test_share_log_pages(api):
    w = world_factory(api)
    api.ok(share(api, w, w.A, [w.peer]), 201)
    api.ok(api.delete(f"/v1/audiences/{w.A}/shares", account=w.owner))
    first = api.ok(api.get(f"/v1/audiences/{w.A}/share-log?limit=2", account=w.owner))
    assert len(first["entries"]) == 2 and first["next_after"] == first["entries"][-1]["id"]
    rest = api.ok(api.get(f"/v1/audiences/{w.A}/share-log?limit=2&after={first['next_after']}", account=w.owner))
    entries = first["entries"] + rest["entries"]
    assert sorted((e["action"], e["account_id"]) for e in entries) == sorted(
        [("share", w.recipient), ("share", w.peer), ("stop", w.recipient), ("stop", w.peer)])


# -- rule 8: lookalikes -------------------------------------------------------------------

def test_lookalikes_from_owned_active_custom_audiences_and_refresh_needs_the_seed(api):
    w = world_factory(api)
    created = api.ok(api.post(f"/v1/audiences/{w.B}/lookalikes", {"id": w.L, "name": "lal"}, account=w.owner), 201)
    assert created["audience"]["type"] == "lookalike" and created["audience"]["seed_audience_id"] == w.B
    assert api.post(f"/v1/audiences/{w.L}/lookalikes", {"name": "lal of lal"}, account=w.owner).codes == [
        "seed_not_custom"]
    assert api.post(f"/v1/audiences/{w.B}/lookalikes", {"name": "x"}, account=w.recipient).codes == [
        "recipient_action_forbidden"]
    assert api.post(f"/v1/audiences/{w.B}/refresh", account=w.owner).codes == ["not_lookalike"]
    refreshed = api.ok(api.post(f"/v1/audiences/{w.L}/refresh", account=w.owner))
    assert refreshed["audience"]["revision"] == 2
    api.ok(share(api, w, w.L, [w.peer]), 201)
    assert api.post(f"/v1/audiences/{w.L}/refresh", account=w.peer).codes == ["recipient_action_forbidden"]
    # the seed is deleted (after its recipient's share ends with it): refresh is refused
    api.ok(api.delete(f"/v1/audiences/{w.B}", account=w.owner))
    assert api.post(f"/v1/audiences/{w.L}/refresh", account=w.owner).codes == ["seed_deleted"]


# -- rule 9: unknown principals and audiences ----------------------------------------------

def test_unknown_principal_and_audience_are_denies_not_errors(api):
    w = world_factory(api)
    ghost = api.authorize(w.id("ghost"), "view", w.A)
    assert ghost.status == 200 and ghost.codes == ["unknown_principal"]
    missing = api.authorize(w.owner, "view", w.id("nothing"))
    assert missing.status == 200 and missing.codes == ["unknown_audience"]
    assert api.get(f"/v1/audiences/{w.id('nothing')}", account=w.owner).status == 404
    assert api.get(f"/v1/audiences/{w.A}", account=w.id("ghost")).codes == ["unknown_principal"]


def test_every_decision_is_logged_with_the_policy_version(api):
    w = world_factory(api)
    answer = api.ok(api.authorize(w.recipient, "share", w.A, target_account_id=w.peer))
    found = []
    after = 0
    while True:
        page = api.ok(api.get(f"/v1/decisions?after={after}&limit=1000"))
        found += [d for d in page["decisions"] if d["decision_id"] == answer["decision_id"]]
        if not page["decisions"]:
            break
        after = page["next_after"]
    assert len(found) == 1
    entry = found[0]
    assert entry["principal"] == w.recipient and entry["action"] == "share" and entry["decision"] == "deny"
    assert entry["resource"] == {"audience_id": w.A, "target_account_id": w.peer}
    assert [r["code"] for r in entry["reasons"]] == ["reshare_forbidden"]
    assert entry["policy_version"] == answer["policy_version"]


def test_events_record_every_applied_effect_in_order(api):
    w = world_factory(api)
    api.ok(api.put(f"/v1/ad-groups/{w.ag}", {"name": "g", "include": [w.A]}, account=w.recipient))
    after = last_event_id(api)
    stopped = api.ok(api.delete(f"/v1/audiences/{w.A}/shares/{w.recipient}", account=w.owner))
    events = api.ok(api.get(f"/v1/events?after={after}&limit=100"))["events"]
    mine = [e for e in events if e["audience_id"] == w.A]
    assert [e["type"] for e in mine] == [e["type"] for e in stopped["effects"]]
    ids = [e["id"] for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert len({e["decision_id"] for e in mine}) == 1


def test_batch_authorize_answers_in_order(api):
    w = world_factory(api)
    checks = [{"principal": {"account_id": w.owner}, "action": "edit", "resource": {"audience_id": w.A}},
              {"principal": {"account_id": w.recipient}, "action": "edit", "resource": {"audience_id": w.A}},
              {"principal": {"account_id": w.recipient}, "action": "apply", "resource": {"audience_id": w.A},
               "context": {"ad_group_id": w.id("none")}}]
    results = api.ok(api.post("/v1/authorize/batch", {"checks": checks}))["results"]
    assert [r["decision"] for r in results] == ["allow", "deny", "deny"]
    assert [r["reasons"][0]["code"] for r in results[1:]] == ["recipient_action_forbidden", "unknown_ad_group"]
    assert results[0]["effects"][0]["type"] == "propagate_update"


# -- settled rules: lookalikes share as their seed, apply asked in general ------------------

def test_a_lookalike_of_a_seed_that_is_not_shareable_is_not_shareable(api):
    w = world_factory(api)
    api.ok(api.post("/v1/audiences", {"id": w.X, "name": "leads", "source": "lead_generation"}, account=w.owner), 201)
    for seed, lookalike in ((w.X, w.LX), (w.A, w.LA)):
        created = api.ok(api.post(f"/v1/audiences/{seed}/lookalikes", {"id": lookalike, "name": "lal"},
                                  account=w.owner), 201)
        assert ("share" in created["audience"]["actions"]) == (seed == w.A)
    refused = share(api, w, w.LX, [w.peer])
    assert refused.status == 403 and refused.codes == ["audience_not_shareable"]
    assert api.authorize(w.owner, "share", w.LX, target_account_id=w.peer).codes == ["audience_not_shareable"]
    assert "share" not in api.ok(api.get(f"/v1/audiences/{w.LX}", account=w.owner))["actions"]
    api.ok(share(api, w, w.LA, [w.peer]), 201)  # a lookalike of a shareable seed is shareable
    # the seed's source still decides once the seed is deleted
    api.ok(api.delete(f"/v1/audiences/{w.X}", account=w.owner))
    assert share(api, w, w.LX, [w.peer]).codes == ["audience_not_shareable"]


def test_apply_without_an_ad_group_asks_about_the_accounts_own_ad_groups(api):
    """The general question, answered as the audience's ``actions`` list it."""
    w = world_factory(api)
    api.ok(api.post(f"/v1/audiences/{w.A}/lookalikes", {"id": w.L, "name": "lal"}, account=w.owner), 201)
    api.ok(api.delete(f"/v1/audiences/{w.B}/shares/{w.recipient}", account=w.owner))
    expected = {(w.owner, w.A): "allow", (w.recipient, w.A): "allow", (w.recipient, w.B): "no_access",
                (w.peer, w.A): "no_access", (w.owner, w.L): "allow", (w.recipient, w.L): "no_access"}
    for (account, audience), answer in expected.items():
        asked = api.ok(api.authorize(account, "apply", audience))
        assert (asked["decision"] if asked["decision"] == "allow" else asked["reasons"][0]["code"]) == answer
        listed = {a["id"]: a["actions"] for a in api.ok(api.get(f"/v1/accounts/{account}/audiences",
                                                                 account=account))["audiences"]}
        assert ("apply" in listed.get(audience, [])) == (answer == "allow"), (account, audience)
    # naming an ad group still asks about that ad group
    assert api.authorize(w.owner, "apply", w.A, ad_group_id=w.id("nope")).codes == ["unknown_ad_group"]
    api.ok(api.put(f"/v1/ad-groups/{w.ag}", {"name": "g"}, account=w.recipient))
    assert api.authorize(w.owner, "apply", w.A, ad_group_id=w.ag).codes == ["ad_group_not_owned"]
    api.ok(api.delete(f"/v1/audiences/{w.C}/shares", account=w.owner))
    api.ok(api.delete(f"/v1/audiences/{w.C}", account=w.owner))
    assert api.authorize(w.owner, "apply", w.C).codes == ["audience_deleted"]

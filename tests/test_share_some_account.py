"""`share` asked of /v1/authorize without a target: "may this account share this audience
with some account?", the question the audience's `actions` list answers for `share`."""

from __future__ import annotations

from tests.support import world_factory


def _share(api, account: str, audience: str) -> dict:
    return api.ok(api.post("/v1/authorize", {"principal": {"account_id": account}, "action": "share",
                                             "resource": {"audience_id": audience}}))


def _listed_actions(api, account: str, audience: str) -> list[str]:
    return api.ok(api.get(f"/v1/audiences/{audience}", account=account))["actions"]


def test_share_without_a_target_answers_what_the_list_shows(api):
    for terms in (True, False):  # without the terms accepted, the owner may share with nobody
        w = world_factory(api, terms=terms, share_with_recipient=terms)  # no share without the terms
        for account in (w.owner, w.recipient) if terms else (w.owner,):
            answer = _share(api, account, w.A)
            assert (answer["decision"] == "allow") == ("share" in _listed_actions(api, account, w.A)), (terms, account)
            assert all(r["code"] != "unknown_target_account" for r in answer["reasons"])
        assert _share(api, w.owner, w.A)["decision"] == ("allow" if terms else "deny")
        assert _share(api, w.recipient, w.A)["decision"] == "deny"  # a recipient may not reshare


def test_a_named_target_is_still_decided_on_its_own(api, world):
    w = world
    unknown = api.ok(api.post("/v1/authorize", {"principal": {"account_id": w.owner}, "action": "share",
                                                "resource": {"audience_id": w.A},
                                                "context": {"target_account_id": f"nobody-{w.uid}"}}))
    assert unknown["decision"] == "deny" and unknown["reasons"][0]["code"] == "unknown_target_account"
    assert _share(api, w.owner, w.A)["decision"] == "allow"

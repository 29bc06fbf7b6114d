"""The replay keeps to the decisions of one policy version and says which facts it had to
default; and a candidate is checked against the current state: the active shares it would
not keep or allow, and the ad groups that ending them would pause, broaden or disconnect."""

from __future__ import annotations

import json

import pytest

from tests.support import Api, LiveServer, last_event_id, world_factory
from tests.support.policy import cli, copy_policy, replace

KEEP_IN_SCOPE = "p, owner, keep_share, True, allow, share_in_scope,"
OWNER_SHARES = "p, owner, share, True, allow, owner_may_share,"
STOP_BROADEN = "owner_stop_sharing, end_share remove_from_list disconnect_audience:broaden"


def _suspension(policy):
    """The issue's example: "a suspended account cannot share", on a fact the log's rows lack."""
    with (policy / "facts.yaml").open("a") as f:
        f.write("principal_suspended: {type: bool, source: context, default: true, doc: the acting account is suspended}\n")
    replace(policy / "reasons.yaml", "deny:\n", "deny:\n  account_suspended: A suspended account cannot share.\n")
    replace(policy / "policy.csv", OWNER_SHARES,
            f"p, owner, share, r.f.principal_suspended, deny, account_suspended,\n{OWNER_SHARES}")
    return policy


def _diff(*args) -> dict:
    result = cli("policy", "diff", *[str(a) for a in args], "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.full
def test_only_the_version_in_force_is_replayed_and_defaulted_facts_are_named(tmp_path):
    url = f"sqlite:///{tmp_path / 'authz.db'}"
    serving = copy_policy(tmp_path / "serving")
    with LiveServer(url, policy_dir=str(serving), extra_args=["--policy-poll", "0"]) as live:
        api = Api(live.base_url, live.token)
        w = world_factory(api, share_with_recipient=False)
        first = api.ok(api.get("/readyz"))["policy_version"]
        old = [api.ok(api.authorize(w.owner, "share", w.A, target_account_id=w.peer))["decision_id"] for _ in range(2)]
        # the policy changes under the running server: recipients may not view any more
        replace(serving / "policy.csv", "p, recipient, view, True, allow, recipient_may_view,",
                "p, recipient, view, True, allow, recipient_may_view_too,")
        replace(serving / "tests" / "matrix.yaml", "reason: recipient_may_view}", "reason: recipient_may_view_too}")
        reloaded = api.ok(api.post("/v1/policy/reload"))
        assert reloaded["status"] == "loaded", reloaded
        second = reloaded["policy_version"]
        new = [api.ok(api.authorize(w.owner, "share", w.A, target_account_id=w.peer))["decision_id"] for _ in range(3)]
        api.ok(api.get("/v1/decisions?after=0&limit=1"))  # writes the server's batch of log rows
        candidate = _suspension(copy_policy(tmp_path / "candidate"))
        # POST /v1/policy/diff keeps to the version serving too, unless told otherwise
        served = api.ok(api.post("/v1/policy/diff", {"candidate_dir": str(candidate), "examples": 10}))
        assert served["only_version"] == second and served["changes"][0]["count"] == 3
        assert served["changes"][0]["defaulted_facts"] == ["principal_suspended"]
        every = api.ok(api.post("/v1/policy/diff", {"candidate_dir": str(candidate), "only_version": "all"}))
        assert every["only_version"] is None and sum(c["count"] for c in every["changes"]) == 5

    # default: the version in force (that of --policy-dir) only
    report = _diff("--candidate", candidate, "--policy-dir", serving, "--database", url)
    assert report["only_version"] == second
    [change] = report["changes"]
    assert (change["kind"], change["action"], change["after"]) == ("allow->deny", "share", "account_suspended")
    assert change["count"] == 3 and sorted(e["decision_id"] for e in change["examples"]) == sorted(new)
    assert change["defaulted_facts"] == ["principal_suspended"]
    assert all(e["defaulted_facts"] == ["principal_suspended"] and e["policy_version"] == second
               for e in change["examples"])
    assert any("other policy versions were left out" in n for n in report["notes"])
    # one named version, or all of them
    earlier = _diff("--candidate", candidate, "--policy-dir", serving, "--database", url, "--only-version", first)
    assert earlier["only_version"] == first
    assert sorted(e["decision_id"] for e in earlier["changes"][0]["examples"]) == sorted(old)
    everything = _diff("--candidate", candidate, "--policy-dir", serving, "--database", url,
                       "--only-version", "all", "--examples", "10")
    assert everything["only_version"] is None and sum(c["count"] for c in everything["changes"]) == 5
    # the earlier version's allows have no known reason: the "? -> ..." rows the default avoids
    assert sorted((c["before"], c["count"]) for c in everything["changes"]) == [("", 2), ("owner_may_share", 3)]
    assert everything["replayed"] > report["replayed"] + earlier["replayed"] - 1
    text = cli("policy", "diff", "--candidate", candidate, "--policy-dir", serving, "--database", url).stdout
    assert f"made by policy {second}" in text
    assert "facts these rows lack, replayed with their defaults: principal_suspended" in text
    assert "(defaulted: principal_suspended)" in text


def test_the_current_state_against_a_candidate(server, api, tmp_path):
    w = world_factory(api)  # A (website_traffic), B (customer_file), C (engagement) shared with recipient
    api.ok(api.put(f"/v1/ad-groups/{w.ag}", {"name": "only A", "include": [w.A]}, account=w.recipient))
    api.ok(api.put(f"/v1/ad-groups/{w.id('ag2')}", {"name": "A and B", "include": [w.A, w.B]}, account=w.recipient))
    candidate = copy_policy(tmp_path / "candidate")
    # shares of website traffic leave the sharing scope; engagement audiences may no longer be shared
    replace(candidate / "policy.csv", KEEP_IN_SCOPE,
            f'p, owner, keep_share, r.f.audience_source == "website_traffic", deny, audience_not_shareable,\n'
            f"{KEEP_IN_SCOPE}")
    replace(candidate / "policy.csv", OWNER_SHARES,
            f'p, owner, share, r.f.audience_source == "engagement", deny, audience_not_shareable,\n{OWNER_SHARES}')
    before = last_event_id(api)  # nothing is written by the check

    report = _diff("--candidate", candidate, "--database", server.database_url, "--current-state")
    mine = {e["audience_id"]: e for e in report["shares"] if e["recipient_account_id"] == w.recipient
            and e["owner_account_id"] == w.owner}
    assert set(mine) == {w.A, w.C}  # B stays and could be made again
    assert mine[w.A]["would_end"] and mine[w.A]["keep_share"] == {"decision": "deny", "reason": "audience_not_shareable"}
    assert mine[w.A]["share"]["decision"] == "allow"
    assert sorted((g["ad_group_id"], g["outcome"]) for g in mine[w.A]["ad_groups"]) == sorted(
        [(w.ag, "broaden"), (w.id("ag2"), "disconnect")])
    assert not mine[w.C]["would_end"] and mine[w.C]["ad_groups"] == []
    assert mine[w.C]["share"] == {"decision": "deny", "reason": "audience_not_shareable"}
    assert w.ag in report["ad_groups"]["broaden"] and w.id("ag2") in report["ad_groups"]["disconnect"]
    assert report["not_kept"] >= 1 and report["not_allowed_now"] >= 1

    # a candidate whose stop_sharing pauses an emptied ad group says so
    replace(candidate / "policy.csv", STOP_BROADEN, STOP_BROADEN.replace("broaden", "pause"))
    paused = _diff("--candidate", candidate, "--database", server.database_url, "--current-state")
    assert w.ag in paused["ad_groups"]["pause"] and w.ag not in paused["ad_groups"]["broaden"]
    gate = cli("policy", "diff", "--candidate", candidate, "--database", server.database_url, "--current-state",
               "--fail-on-change")
    assert gate.exit_code == 1 and f"ad group {w.ag} of {w.recipient}: pause" in gate.stdout
    # the shipped policy itself keeps and allows every share of this world
    same = _diff("--candidate", copy_policy(tmp_path / "same"), "--database", server.database_url, "--current-state")
    assert not [e for e in same["shares"] if e["owner_account_id"] == w.owner]
    assert last_event_id(api) == before
    assert api.ok(api.get(f"/v1/audiences/{w.A}/shares", account=w.owner))["shares"]

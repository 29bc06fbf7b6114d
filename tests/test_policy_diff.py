"""Impact analysis: decisions made over HTTP (in process on SQLite; a live PostgreSQL server
in the full tier) are replayed against a changed copy of the policy; exactly the decisions the change touches are
reported, by the CLI and by POST /v1/policy/diff."""

from __future__ import annotations

import datetime
import json

import pytest

from tests.support import ROOT, BaseApi, world_factory
from tests.support.policy import (
    RECIPIENT_REFRESH_ALLOW,
    RECIPIENT_REFRESH_DENY,
    cli,
    copy_policy,
    let_recipients_refresh_lookalikes,
    replace,
)

BROADEN = "end_share remove_from_list disconnect_audience:broaden"


def _candidate(tmp_path):
    """Four changes: recipients may refresh lookalikes (deny -> allow), a recipient's edit is
    refused with another code (same decision, other reason), recipients may no longer apply
    (allow -> deny), and an owner's delete pauses emptied ad groups (other effects)."""
    policy = copy_policy(tmp_path / "candidate")
    let_recipients_refresh_lookalikes(policy, with_tests=False)
    replace(policy / "policy.csv", "p, recipient, edit, True, deny, recipient_action_forbidden,",
            "p, recipient, edit, True, deny, not_owner,")
    replace(policy / "policy.csv", "p, recipient, apply, True, allow, recipient_may_apply,",
            "p, recipient, apply, True, deny, recipient_action_forbidden,")
    replace(policy / "policy.csv", f"owner_delete, {BROADEN}", f"owner_delete, {BROADEN.replace('broaden', 'pause')}")
    return policy


def _decide(api: BaseApi, account, action, audience, **context) -> str:
    return api.ok(api.authorize(account, action, audience, **context))["decision_id"]


@pytest.fixture
def traffic(api):
    """Decisions of the source's scenario, and the ids of those the candidate changes."""
    since = datetime.datetime.now(datetime.timezone.utc).isoformat()
    w = world_factory(api)
    api.ok(api.post(f"/v1/audiences/{w.A}/lookalikes", {"id": w.L, "name": "lal"}, account=w.owner), 201)
    api.ok(api.post(f"/v1/audiences/{w.L}/shares", {"account_ids": [w.recipient]}, account=w.owner), 201)
    api.ok(api.put(f"/v1/ad-groups/{w.ag_r}", {"name": "recipient's"}, account=w.recipient))
    ids = {
        "apply": [_decide(api, w.recipient, "apply", w.A, ad_group_id=w.ag_r) for _ in range(2)],
        "edit": [_decide(api, w.recipient, "edit", w.B) for _ in range(2)],
        "delete": [_decide(api, w.owner, "delete", w.C)],
    }
    for _ in range(2):  # unchanged by the candidate
        _decide(api, w.owner, "refresh_lookalike", w.L)
        _decide(api, w.peer, "refresh_lookalike", w.L)
        _decide(api, w.recipient, "delete", w.A)
        _decide(api, w.owner, "apply", w.A, ad_group_id=w.ag_r)  # another account's ad group
    ids["refresh_lookalike"] = [_decide(api, w.recipient, "refresh_lookalike", w.L) for _ in range(3)]
    # /v1/authorize batches its decision-log rows; reading the log writes the server's batch
    api.ok(api.get("/v1/decisions?after=0&limit=1"))
    return since, ids, w


EXPECTED = [  # (kind, action, before, after, effects before, effects after)
    ("allow->deny", "apply", "recipient_may_apply", "recipient_action_forbidden", None, None),
    ("deny->allow", "refresh_lookalike", "recipient_action_forbidden", "recipient_may_refresh_lookalike", None, None),
    ("reason", "edit", "recipient_action_forbidden", "not_owner", None, None),
    ("effects", "delete", "owner_delete", "owner_delete", BROADEN.split(), BROADEN.replace("broaden", "pause").split()),
]


def _assert_exactly_the_expected_changes(report: dict, ids: dict, principal_of: dict):
    changes = report["changes"]
    assert [(c["kind"], c["action"], c["before"], c["after"], c.get("before_effects"), c.get("after_effects"))
            for c in changes] == EXPECTED
    for change in changes:
        expected_ids = ids[change["action"]]
        assert change["count"] == len(expected_ids)
        assert sorted(e["decision_id"] for e in change["examples"]) == sorted(expected_ids)
        assert {e["principal"] for e in change["examples"]} == {principal_of[change["action"]]}
    assert report["changed"] == sum(len(v) for v in ids.values())
    assert report["by_kind"] == {"allow->deny": 2, "deny->allow": 3, "reason": 2, "effects": 1}
    assert report["unchanged"] == report["replayed"] - report["changed"] >= 8 + 10  # and the scenario's own
    assert report["skipped"] == 0


def test_cli_diff_reports_exactly_the_flips(server, traffic, tmp_path):
    since, ids, w = traffic
    candidate = _candidate(tmp_path)
    result = cli("policy", "diff", "--candidate", candidate, "--database", server.database_url, "--since", since,
                 "--format", "json", "--examples", "5")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    principals = {"apply": w.recipient, "edit": w.recipient, "delete": w.owner, "refresh_lookalike": w.recipient}
    _assert_exactly_the_expected_changes(report, ids, principals)
    assert report["changes"][0]["examples"][0]["resource"] == {"audience_id": w.A, "ad_group_id": w.ag_r}

    # the text report groups the same way, and --fail-on-change makes it a gate
    text = cli("policy", "diff", "--candidate", candidate, "--database", server.database_url, "--since", since,
               "--fail-on-change")
    assert text.exit_code == 1
    assert "8 would change: 2 allow->deny, 3 deny->allow, 2 reason, 1 effects" in text.stdout
    assert "deny->allow  refresh_lookalike  recipient_action_forbidden -> recipient_may_refresh_lookalike: 3" in text.stdout


def test_cli_diff_of_the_last_n(server, traffic, tmp_path):
    since, ids, w = traffic
    report = json.loads(cli("policy", "diff", "--candidate", _candidate(tmp_path), "--database",
                            server.database_url, "--last", "3", "--format", "json").stdout)
    assert report["replayed"] == 3
    assert [(c["kind"], c["action"], c["count"]) for c in report["changes"]] == [("deny->allow", "refresh_lookalike", 3)]


def test_cli_diff_of_the_policy_itself_changes_nothing(server, traffic, tmp_path):
    since, ids, w = traffic
    report = json.loads(cli("policy", "diff", "--candidate", copy_policy(tmp_path / "same"), "--database",
                            server.database_url, "--since", since, "--format", "json").stdout)
    assert report["changed"] == 0 and report["changes"] == [] and report["replayed"] >= 26


def test_cli_diff_refuses_a_time_utc_cannot_hold(server):
    result = cli("policy", "diff", "--candidate", ROOT / "policy", "--database", server.database_url,
                 "--since", "9999-12-31T23:59:59-23:59")
    assert result.exit_code == 2 and "--since" in result.output and "outside the range of dates" in result.output


def test_cli_diff_refuses_a_candidate_that_fails_check(server, tmp_path):
    candidate = copy_policy(tmp_path / "broken")
    replace(candidate / "policy.csv", RECIPIENT_REFRESH_DENY, RECIPIENT_REFRESH_DENY.replace("recipient_action", "x"))
    result = cli("policy", "diff", "--candidate", candidate, "--database", server.database_url, "--last", "5")
    assert result.exit_code == 2
    assert "reason 'x_forbidden' is not listed in reasons.yaml" in result.stdout


def test_the_diff_endpoint(api, traffic, tmp_path):
    since, ids, w = traffic
    candidate = _candidate(tmp_path)
    principals = {"apply": w.recipient, "edit": w.recipient, "delete": w.owner, "refresh_lookalike": w.recipient}
    inline = api.ok(api.post("/v1/policy/diff", {"files": {"policy.csv": (candidate / "policy.csv").read_text()},
                                                 "since": since, "examples": 5}))
    _assert_exactly_the_expected_changes(inline, ids, principals)
    by_dir = api.ok(api.post("/v1/policy/diff", {"candidate_dir": str(candidate), "since": since, "examples": 5}))
    assert by_dir["changes"] == inline["changes"]
    last = api.ok(api.post("/v1/policy/diff", {"candidate_dir": str(candidate), "last": 3}))
    assert [(c["action"], c["count"]) for c in last["changes"]] == [("refresh_lookalike", 3)]


@pytest.mark.parametrize("body, status, message", [
    ({}, 400, "give exactly one of candidate_dir and files"),
    ({"candidate_dir": "/tmp", "files": {"policy.csv": ""}}, 400, "give exactly one of candidate_dir and files"),
    ({"files": {"policy.py": "x"}}, 400, "files.policy.py"),
    ({"files": {}}, 400, "files names no policy file"),
    ({"candidate_dir": "/nonexistent/policy"}, 400, "no such directory"),
    ({"files": {"policy.csv": "p, owner, view, True, allow, owner_may_view,\n"}, "last": 0}, 400, "last"),
    ({"files": {"policy.csv": RECIPIENT_REFRESH_ALLOW.replace("allow,", "allw,") + "\n"}}, 422, "eft must be allow"),
    # times that exist in their own offset but not in UTC (past year 9999, before year 1)
    ({"candidate_dir": "/tmp", "since": "9999-12-31T23:59:59-23:59"}, 400, "outside the range of dates"),
    ({"candidate_dir": "/tmp", "since": "0001-01-01T00:00:00+23:59"}, 400, "outside the range of dates"),
    ({"candidate_dir": "/tmp", "since": "2026-13-01T00:00:00Z"}, 400, "since"),
])
def test_the_diff_endpoint_validates(api, body, status, message):
    answer = api.post("/v1/policy/diff", body)
    assert answer.status == status, answer.body
    assert message in json.dumps(answer.body)
    assert api.with_token("wrong").post("/v1/policy/diff", {"last": 1}).status == 401

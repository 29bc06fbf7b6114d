"""`audience-authz import` and `demo`: bulk loading through the actions and the policy."""

from __future__ import annotations

import json

import pytest

from tests.support import Api, LiveServer
from tests.support.ops import cli


def _jsonl(*records) -> str:
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n"


SCENARIO = _jsonl(
    "# two Business Centers, three accounts, one audience shared in bulk",
    {"kind": "business_center", "id": "bc_1", "name": "BC one"},
    {"kind": "business_center", "id": "bc_2", "name": "BC two", "cross_bc_allowlisted": False},
    {"kind": "account", "id": "owner", "name": "Owner", "business_center_id": "bc_1"},
    {"kind": "account", "id": "agency", "name": "Agency", "business_center_id": "bc_1"},
    {"kind": "account", "id": "outsider", "name": "Outsider", "business_center_id": "bc_2"},
    "",
    {"kind": "terms_acceptance", "account_id": "owner"},
    {"kind": "audience", "account_id": "owner", "id": "aud_A", "name": "A", "source": "website_traffic",
     "member_count": 100},
    {"kind": "lookalike", "account_id": "owner", "seed_audience_id": "aud_A", "id": "lal_A", "name": "L"},
    {"kind": "share", "account_id": "owner", "audience_id": "aud_A", "account_ids": ["agency"]},
    {"kind": "share", "account_id": "owner", "audience_id": "aud_A", "account_ids": ["outsider"]},
    {"kind": "share", "account_id": "agency", "audience_id": "aud_A", "account_ids": ["owner"]},
    {"kind": "ad_group", "account_id": "agency", "id": "ag_1", "name": "G", "include": ["aud_A"]},
    {"kind": "ad_group", "account_id": "outsider", "id": "ag_2", "name": "G", "include": ["aud_A"]},
    {"kind": "account", "id": "lost", "name": "Lost", "business_center_id": "bc_none"},
    {"kind": "audience", "account_id": "owner", "id": "aud_B", "name": "B", "source": "customer_file",
     "colour": "red"},
    "{not json",
)


@pytest.mark.full
def test_import_applies_each_line_through_the_policy_and_reports_the_rest(empty_database, tmp_path):
    path = tmp_path / "bulk.jsonl"
    path.write_text(SCENARIO)
    result = cli("import", str(path), "--database", empty_database)
    assert result.returncode == 1, result.stderr
    assert result.stdout.strip().splitlines()[-1] == (
        "applied 10 line(s) (2 business_center, 3 account, 1 terms_acceptance, 1 audience, 1 lookalike,"
        " 1 share, 1 ad_group); 3 denied by the policy (not_same_business_center 1, reshare_forbidden 1,"
        " unknown_audience 1); 3 invalid or failed")
    problems = {int(line.split(":")[1]): line.split(": ", 1)[1] for line in result.stderr.splitlines()
                if line.startswith(str(path))}
    assert sorted(problems) == [12, 13, 15, 16, 17, 18]
    assert problems[12].startswith("denied:") and '"code":"not_same_business_center"' in problems[12]
    assert '"code":"reshare_forbidden"' in problems[13]
    # an audience the account has no relation to is named as unknown (docs/visibility.md)
    assert '"code":"unknown_audience"' in problems[15] and '"audience_id":"aud_A"' in problems[15]
    assert problems[16] == "failed: unknown_business_center: no business center with id 'bc_none'"
    assert problems[17].startswith("invalid: audience.colour")
    assert problems[18].startswith("invalid:")

    with LiveServer(empty_database) as live:
        api = Api(live.base_url, live.token)
        shares = api.ok(api.get("/v1/audiences/aud_A/shares", account="owner"))["shares"]
        assert [s["account_id"] for s in shares] == ["agency"]
        assert api.ok(api.get("/v1/ad-groups/ag_1", account="agency"))["include"] == ["aud_A"]
        assert api.get("/v1/ad-groups/ag_2", account="outsider").status == 404
        assert api.ok(api.get("/v1/audiences/lal_A", account="owner"))["seed_audience_id"] == "aud_A"
        decisions = api.ok(api.get("/v1/decisions?limit=1000"))["decisions"]
        refused = [d for d in decisions if d["action"] == "share" and d["decision"] == "deny"]
        assert sorted(d["reasons"][0]["code"] for d in refused) == ["not_same_business_center",
                                                                    "reshare_forbidden"]

    again = cli("import", "-", "--database", empty_database, input=SCENARIO)  # from stdin, a second time
    assert again.returncode == 1
    last = again.stdout.strip().splitlines()[-1]
    assert "2 already present" in last and "already_shared 1" in last


def test_a_clean_import_exits_zero(empty_database, tmp_path):
    path = tmp_path / "clean.jsonl"
    path.write_text(_jsonl({"kind": "business_center", "id": "bc", "name": "BC"},
                           {"kind": "account", "id": "a", "name": "A", "business_center_id": "bc"}))
    result = cli("import", str(path), "--database", empty_database)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "applied 2 line(s) (1 business_center, 1 account)"
    assert f"importing {path}" in result.stderr  # the progress bar's label


@pytest.mark.full
def test_demo_loads_the_sources_scenario_once(empty_database):
    first = cli("demo", "--database", empty_database)
    assert first.returncode == 0, first.stderr
    assert "loading the demo data" in first.stderr
    assert first.stdout.splitlines()[-1].startswith("loaded 5 ad groups of acc_recipient")
    second = cli("demo", "--database", empty_database)
    assert second.returncode == 0 and second.stdout.strip() == "demo data is already loaded"
    with LiveServer(empty_database) as live:
        api = Api(live.base_url, live.token)
        group = api.ok(api.get("/v1/ad-groups/ag_include_A_exclude_B", account="acc_recipient"))
        assert (group["include"], group["exclude"]) == (["aud_A"], ["aud_B"])
        listed = api.ok(api.get("/v1/accounts/acc_recipient/audiences", account="acc_recipient"))
        assert [(a["id"], a["relation"]) for a in listed["audiences"]] == [
            ("aud_A", "recipient"), ("aud_B", "recipient"), ("aud_C", "recipient")]

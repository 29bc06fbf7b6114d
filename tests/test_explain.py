"""`"explain": true` on POST /v1/authorize (and in a batch): the policy line that decided, with
its file and line, the relation and the facts, through the HTTP API (in process, and on a live
PostgreSQL server in the full tier)."""

from __future__ import annotations

import yaml

from tests.support import FIXTURE_POLICY
from tests.support.policy import line_of

POLICY = FIXTURE_POLICY  # the policy the tests serve
FACTS = list(yaml.safe_load((POLICY / "facts.yaml").read_text()))


def _check(account, action, audience, explain=None, **context):
    body = {"principal": {"account_id": account}, "action": action, "resource": {"audience_id": audience}}
    if context:
        body["context"] = context
    if explain is not None:
        body["explain"] = explain
    return body


def _logged(api, decision_id) -> dict:
    after = 0
    while True:
        page = api.ok(api.get(f"/v1/decisions?after={after}&limit=1000"))
        for row in page["decisions"]:
            if row["decision_id"] == decision_id:
                return row
        if not page["decisions"]:
            raise AssertionError(f"decision {decision_id} is not in the log")
        after = page["next_after"]


def test_explain_names_the_line_and_the_facts(api, world):
    w = world
    answer = api.ok(api.post("/v1/authorize", _check(w.owner, "share", w.A, explain=True, target_account_id=w.other)))
    assert answer["decision"] == "deny" and [r["code"] for r in answer["reasons"]] == ["not_same_business_center"]
    line = line_of(POLICY / "policy.csv", "p, owner, share, not r.f.same_bc")
    assert answer["explanation"]["matched_rule"] == {
        "file": "policy.csv", "line": line, "rel": "owner", "act": "share",
        "cond": "not r.f.same_bc and not r.f.owner_bc_allowlisted", "eft": "deny",
        "reason": "not_same_business_center", "effects": []}
    assert answer["explanation"]["relation"] == "owner"
    facts = answer["explanation"]["facts"]
    assert list(facts) == FACTS  # every fact of facts.yaml, as the decision saw it
    assert facts["same_bc"] is False and facts["owner_bc_allowlisted"] is False
    assert facts["target_known"] is True and facts["target_in_bc"] is True and facts["principal_terms_accepted"] is True
    # the decision log keeps the same line for the same decision
    assert _logged(api, answer["decision_id"])["rule_line"] == line


def test_an_allow_is_explained_with_its_effects(api, world):
    w = world
    answer = api.ok(api.post("/v1/authorize", _check(w.owner, "stop_sharing", w.A, explain=True,
                                                     target_account_id=w.recipient)))
    assert answer["decision"] == "allow"
    rule = answer["explanation"]["matched_rule"]
    assert rule["line"] == line_of(POLICY / "policy.csv", "owner_stop_sharing")
    assert rule["effects"] == ["end_share", "remove_from_list", "disconnect_audience:broaden"]
    assert answer["explanation"]["facts"]["target_has_share"] is True


def test_an_unknown_principal_is_explained(api, world):
    answer = api.ok(api.post("/v1/authorize", _check(world.id("nobody"), "view", world.A, explain=True)))
    assert answer["reasons"][0]["code"] == "unknown_principal"
    assert answer["explanation"]["relation"] == "none"
    assert answer["explanation"]["facts"]["principal_known"] is False
    assert answer["explanation"]["matched_rule"]["line"] == line_of(POLICY / "policy.csv", "deny, unknown_principal,")


def test_without_the_flag_there_is_no_explanation(api, world):
    w = world
    for flag in (None, False):
        answer = api.ok(api.post("/v1/authorize", _check(w.recipient, "share", w.A, explain=flag,
                                                         target_account_id=w.peer)))
        assert answer["decision"] == "deny" and "explanation" not in answer
        assert set(answer) == {"decision", "reasons", "effects", "effect_counts", "policy_version", "decision_id"}


def test_batch_explains_the_checks_that_ask(api, world):
    w = world
    body = {"checks": [_check(w.recipient, "edit", w.A, explain=True), _check(w.recipient, "edit", w.A),
                       _check(w.owner, "edit", w.A, explain=True)]}
    first, second, third = api.ok(api.post("/v1/authorize/batch", body))["results"]
    assert first["explanation"]["matched_rule"]["line"] == line_of(POLICY / "policy.csv", "p, recipient, edit, True")
    assert "explanation" not in second
    assert third["explanation"]["matched_rule"]["effects"] == ["propagate_update"]
    assert third["explanation"]["relation"] == "owner"


def test_the_flag_is_a_boolean(api, world):
    answer = api.post("/v1/authorize", _check(world.owner, "view", world.A, explain="yes"))
    assert answer.status == 400 and answer.body["error"]["code"] == "invalid_request"

"""Facts from the caller: a policy author adds "a suspended account cannot share" with policy
files alone (facts.yaml `source: context`, a deny line, a reason, policy tests), and a caller
sends the fact on POST /v1/authorize, the batch and the action endpoints (X-Authz-Context).
Through HTTP (the Flask test client) on a copy of policy/; no Python is changed."""

from __future__ import annotations

import json
import re

import pytest

from audience_authz import config
from audience_authz.http.app import create_app
from tests.support.policy import cli, copy_policy, line_of, replace

TOKEN = "context-facts-token"
SHARE_ALLOW = "p, owner, share, True, allow, owner_may_share,"


def _suspension_policy(directory):
    """The shipped policy plus "a suspended account cannot share", in policy files only."""
    policy = copy_policy(directory)
    with (policy / "facts.yaml").open("a") as facts:
        facts.write("principal_suspended: {type: bool, source: context, default: false,"
                    " doc: the caller says the acting account is suspended}\n")
    replace(policy / "policy.csv", "p, owner, share, r.f.audience_type == \"custom\" and",
            "p, owner, share, r.f.principal_suspended, deny, account_suspended,\n"
            "p, owner, share, r.f.audience_type == \"custom\" and")
    replace(policy / "reasons.yaml", "  no_matching_rule:",
            "  account_suspended: The acting account is suspended and cannot share.\n  no_matching_rule:")
    (policy / "tests" / "suspended.yaml").write_text("""
description: a suspended account cannot share (the caller says so)
defaults: {relation: owner, action: share, facts: {target_specified: true, target_known: true, target_in_bc: true, same_bc: true}}
cases:
  - name: a suspended owner cannot share
    facts: {principal_suspended: true}
    decision: deny
    reason: account_suspended
  - name: an owner not suspended shares as before
    facts: {principal_suspended: false}
    decision: allow
    reason: owner_may_share
  - name: a suspended owner may still view
    action: view
    facts: {principal_suspended: true, target_specified: false, target_known: false, target_in_bc: false, same_bc: false}
    decision: allow
    reason: owner_may_view
""")
    return policy


@pytest.fixture
def policy(tmp_path):
    return _suspension_policy(tmp_path / "policy")


def _client(tmp_path, policy):
    settings = config.load(database=f"sqlite:///{tmp_path / 'authz.db'}", policy_dir=str(policy), tokens=TOKEN)
    app = create_app(settings, policy_poll=0)
    return app.test_client()


class Http:
    def __init__(self, client):
        self.client = client

    def call(self, method, path, body=None, account=None, context=None):
        headers = {"Authorization": f"Bearer {TOKEN}"}
        if account:
            headers["X-Account-Id"] = account
        if context is not None:
            headers["X-Authz-Context"] = context if isinstance(context, str) else json.dumps(context)
        return self.client.open(path, method=method, json=body, headers=headers)


@pytest.fixture
def http(tmp_path, policy):
    http = Http(_client(tmp_path, policy))
    ok = [http.call("PUT", "/v1/business-centers/bc1", {"name": "BC 1"}),
          http.call("PUT", "/v1/accounts/owner", {"name": "Owner", "business_center_id": "bc1"}),
          http.call("PUT", "/v1/accounts/friend", {"name": "Friend", "business_center_id": "bc1"}),
          http.call("POST", "/v1/accounts/owner/terms-acceptance", account="owner"),
          http.call("POST", "/v1/audiences", {"id": "aud1", "name": "Buyers", "source": "customer_file"},
                    account="owner")]
    assert [r.status_code for r in ok] == [200, 200, 200, 200, 201], [r.get_json() for r in ok]
    return http


def _share_check(**context_facts):
    body = {"principal": {"account_id": "owner"}, "action": "share", "resource": {"audience_id": "aud1"},
            "context": {"target_account_id": "friend"}, "explain": True}
    if context_facts:
        body["context"]["facts"] = context_facts
    return body


def test_the_policy_files_alone_pass_check_and_their_tests(policy):
    checked = cli("policy", "check", policy)
    assert checked.exit_code == 0, checked.output
    tested = cli("policy", "test", "--policy-dir", policy, "-q")
    assert tested.exit_code == 0, tested.output
    assert "0 failed, 0 errors, 0 coverage gaps" in tested.output


def test_authorize_decides_on_the_callers_fact(http, policy):
    line = line_of(policy / "policy.csv", "account_suspended")
    suspended = http.call("POST", "/v1/authorize", _share_check(principal_suspended=True))
    assert suspended.status_code == 200, suspended.get_json()
    answer = suspended.get_json()
    assert answer["decision"] == "deny" and [r["code"] for r in answer["reasons"]] == ["account_suspended"]
    assert answer["explanation"]["matched_rule"]["line"] == line
    assert answer["explanation"]["facts"]["principal_suspended"] is True
    assert answer["explanation"]["context_facts"] == {"principal_suspended": "supplied"}
    # not sent: its declared default (false), and explain says it was the default
    plain = http.call("POST", "/v1/authorize", _share_check()).get_json()
    assert plain["decision"] == "allow" and plain["explanation"]["context_facts"] == {"principal_suspended": "default"}
    # the batch: each check carries its own facts
    batch = http.call("POST", "/v1/authorize/batch", {"checks": [
        _share_check(principal_suspended=True), _share_check(principal_suspended=False)]}).get_json()
    assert [r["decision"] for r in batch["results"]] == ["deny", "allow"]
    # the decision log stores the fact with the others
    logged = {row["decision_id"]: row for row in
              http.call("GET", "/v1/decisions?limit=1000").get_json()["decisions"]}
    assert logged[answer["decision_id"]]["facts"]["principal_suspended"] is True
    assert logged[plain["decision_id"]]["facts"]["principal_suspended"] is False


def test_an_action_endpoint_takes_the_fact_in_a_header(http):
    refused = http.call("POST", "/v1/audiences/aud1/shares", {"account_ids": ["friend"]}, account="owner",
                        context={"principal_suspended": True})
    assert refused.status_code == 403, refused.get_json()
    assert [r["code"] for r in refused.get_json()["reasons"]] == ["account_suspended"]
    shares = http.call("GET", "/v1/audiences/aud1/shares", account="owner").get_json()
    assert shares["shares"] == []  # nothing changed
    # the suspended owner's other actions are not touched by the line
    edited = http.call("PATCH", "/v1/audiences/aud1", {"name": "Buyers 2"}, account="owner",
                       context={"principal_suspended": True})
    assert edited.status_code == 200, edited.get_json()
    shared = http.call("POST", "/v1/audiences/aud1/shares", {"account_ids": ["friend"]}, account="owner",
                       context={"principal_suspended": False})
    assert shared.status_code == 201, shared.get_json()


def test_the_header_applies_to_every_decision_of_the_request(http):
    """The audience's listed actions are decided with the caller's facts too."""
    actions = http.call("GET", "/v1/audiences/aud1", account="owner").get_json()["actions"]
    suspended = http.call("GET", "/v1/audiences/aud1", account="owner",
                          context={"principal_suspended": True}).get_json()["actions"]
    assert "share" in actions and "share" not in suspended
    listed = http.call("GET", "/v1/accounts/owner/audiences", account="owner",
                       context={"principal_suspended": True}).get_json()["audiences"]
    assert [a["id"] for a in listed] == ["aud1"] and "share" not in listed[0]["actions"]


@pytest.mark.parametrize(("facts", "code", "words"), [
    ({"principal_suspended": "yes"}, "invalid_context_fact", "'principal_suspended' must be true or false"),
    ({"principal_suspended": 1}, "invalid_context_fact", "'principal_suspended' must be true or false"),
    ({"principal_suspendd": True}, "unknown_context_fact", "did you mean 'principal_suspended'?"),
    ({"same_bc": True}, "unknown_context_fact", "'same_bc' is gathered by the service"),
])
def test_a_wrong_fact_is_a_400_naming_it(http, facts, code, words):
    for answer in (http.call("POST", "/v1/authorize", {**_share_check(), "context": {"facts": facts}}),
                   http.call("POST", "/v1/audiences/aud1/shares", {"account_ids": ["friend"]}, account="owner",
                             context=facts)):
        assert answer.status_code == 400, answer.get_json()
        error = answer.get_json()["error"]
        assert error["code"] == code and words in error["message"], error
    assert http.call("GET", "/v1/audiences/aud1/shares", account="owner").get_json()["shares"] == []


@pytest.mark.parametrize("header", ["{not json", "[true]", "true"])
def test_a_header_that_is_not_a_json_object_is_a_400(http, header):
    answer = http.call("POST", "/v1/audiences/aud1/shares", {"account_ids": ["friend"]}, account="owner",
                       context=header)
    assert answer.status_code == 400 and answer.get_json()["error"]["code"] == "invalid_context"


def test_a_required_fact_is_never_defaulted(tmp_path):
    """`required: true`: a request without it is a 400 naming it, and so is a policy test case."""
    policy = _suspension_policy(tmp_path / "policy")
    replace(policy / "facts.yaml", "principal_suspended: {type: bool, source: context, default: false,",
            "principal_suspended: {type: bool, source: context, required: true,")
    tested = cli("policy", "test", "--policy-dir", policy, "-q")
    assert tested.exit_code == 1
    assert "fact 'principal_suspended' is required from the caller" in tested.output
    # a case that names it runs
    single = policy / "tests" / "suspended.yaml"
    assert cli("policy", "test", "--policy-dir", policy, "--no-coverage", single).exit_code == 0
    for path in (policy / "tests").glob("*.yaml"):  # the rest of the suite does not name it
        if path != single:
            path.unlink()
    http = Http(_client(tmp_path, policy))
    assert http.call("PUT", "/v1/accounts/owner", {"name": "Owner"}).status_code == 200  # decides nothing
    create = {"id": "aud1", "name": "Buyers", "source": "customer_file"}
    refused = http.call("POST", "/v1/audiences", create, account="owner")
    assert refused.status_code == 400 and refused.get_json()["error"]["code"] == "missing_context_fact"
    created = http.call("POST", "/v1/audiences", create, account="owner", context={"principal_suspended": False})
    assert created.status_code == 201, created.get_json()
    for answer in (http.call("POST", "/v1/authorize", _share_check()),
                   http.call("GET", "/v1/audiences/aud1", account="owner")):
        assert answer.status_code == 400, answer.get_json()
        error = answer.get_json()["error"]
        assert error["code"] == "missing_context_fact" and "'principal_suspended' is required" in error["message"]
    sent = http.call("GET", "/v1/audiences/aud1", account="owner", context={"principal_suspended": False})
    assert sent.status_code == 200, sent.get_json()


def test_check_refuses_a_fact_nobody_supplies(tmp_path):
    """The issue's trap: a fact declared and used, that the service never gathers, was always false."""
    policy = copy_policy(tmp_path / "policy")
    with (policy / "facts.yaml").open("a") as facts:
        facts.write("principal_suspended: {type: bool, default: false, doc: suspended}\n")
    checked = cli("policy", "check", policy)
    assert checked.exit_code == 1
    line = line_of(policy / "facts.yaml", "principal_suspended")
    assert f"facts.yaml:{line}" in checked.output
    assert "fact 'principal_suspended' is declared but the service never gathers it" in checked.output
    assert "declare source: context" in checked.output


def test_replay_shows_the_callers_facts(tmp_path, http, policy):
    """`policy diff` replays a decision with the facts the caller sent, and shows them."""
    denied = http.call("POST", "/v1/authorize", _share_check(principal_suspended=True)).get_json()
    assert denied["decision"] == "deny"
    http.call("GET", "/v1/decisions")  # flushes the batched log rows
    candidate = copy_policy(tmp_path / "candidate")
    with (candidate / "facts.yaml").open("a") as facts:
        facts.write("principal_suspended: {type: bool, source: context, default: false, doc: suspended}\n")
    with (candidate / "reasons.yaml").open("a") as reasons:  # the code the policy in force gives, retired
        reasons.write("retired:\n  account_suspended: {deprecated: suspended accounts share again}\n")
    replaced = cli("policy", "diff", "--candidate", candidate, "--policy-dir", policy,  # the policy that decided
                   "--database", f"sqlite:///{tmp_path / 'authz.db'}")
    assert replaced.exit_code == 0, replaced.output
    assert replaced.output.startswith("Reason codes retired: 1")
    assert "deny->allow" in replaced.output and "account_suspended -> owner_may_share" in replaced.output
    assert 'caller\'s facts {"principal_suspended": true}' in replaced.output


def test_verify_considers_every_value_of_a_callers_fact(policy):
    """The z3 proofs read a context fact as free (any value of its type), for every action."""
    with (policy / "properties.yaml").open("a") as properties:
        properties.write("""
  - name: suspended_never_shares
    message: a suspended owner never shares
    relations: [owner]
    actions: [share]
    when: r.f.principal_suspended
    then: d.decision == "deny"
  - name: suspended_owner_shares
    message: wrong on purpose, so that the counterexample shows the caller's fact
    relations: [owner]
    actions: [share]
    when: r.f.principal_suspended
    then: d.decision == "allow"
""")
    verified = cli("policy", "verify", "--policy-dir", policy)
    assert verified.exit_code == 1, verified.output
    assert re.search(r"proven properties.yaml:\d+  suspended_never_shares", verified.output), verified.output
    failed = verified.output[verified.output.index("suspended_owner_shares"):]
    assert failed.startswith("suspended_owner_shares") and "principal_suspended=True" in failed, verified.output
    assert "decided deny" in failed


def test_check_refuses_a_callers_fact_named_like_a_gathered_one(tmp_path):
    policy = copy_policy(tmp_path / "policy")
    replace(policy / "facts.yaml", "same_bc: {type: bool, default: false,",
            "same_bc: {type: bool, source: context, default: false,")
    replace(policy / "facts.yaml", ', invariant: "not r.f.same_bc or (r.f.target_in_bc and r.f.principal_in_bc)"', "")
    line = line_of(policy / "facts.yaml", "same_bc:")
    message = f"facts.yaml:{line}:1: fact 'same_bc' is gathered by the service from its database; it cannot be source: context"
    for args in (("policy", "check", "--policy-dir", policy), ("policy", "test", "--policy-dir", policy)):
        result = cli(*args)
        assert result.exit_code == 1 and message in result.output, (args, result.output)


@pytest.fixture
def typed(tmp_path, empty_database):
    """The suspension policy plus an int and a str context fact, on SQLite or PostgreSQL."""
    policy = _suspension_policy(tmp_path / "typed")
    with (policy / "facts.yaml").open("a") as facts:
        facts.write("principal_quota: {type: int, source: context, default: 0, doc: the caller's quota}\n"
                    "principal_label: {type: str, source: context, default: '', doc: the caller's label}\n")
    replace(policy / "policy.csv", "p, owner, share, r.f.principal_suspended, deny, account_suspended,",
            "p, owner, share, r.f.principal_suspended or r.f.principal_quota < 0 or r.f.principal_label == \"x\","
            " deny, account_suspended,")
    settings = config.load(database=empty_database, policy_dir=str(policy), tokens=TOKEN)
    http = Http(create_app(settings, policy_poll=0).test_client())
    for call in (("PUT", "/v1/business-centers/bc1", {"name": "BC 1"}),
                 ("PUT", "/v1/accounts/owner", {"name": "Owner", "business_center_id": "bc1"}),
                 ("PUT", "/v1/accounts/friend", {"name": "Friend", "business_center_id": "bc1"})):
        assert http.call(*call).status_code == 200
    assert http.call("POST", "/v1/accounts/owner/terms-acceptance", account="owner").status_code == 200
    assert http.call("POST", "/v1/audiences", {"id": "aud1", "name": "Buyers", "source": "customer_file"},
                     account="owner").status_code == 201
    return http


def _logged(http) -> int:
    return len(http.call("GET", "/v1/decisions?limit=1000").get_json()["decisions"])


@pytest.mark.parametrize("facts", [
    '{"principal_quota": 1000000000000000000000000000000}', '{"principal_quota": -1000000000000000000000000000000}',
    '{"principal_quota": 18446744073709551616}', '{"principal_quota": 9223372036854775808}',
    '{"principal_label": "\\ud800"}', '{"principal_label": "a\\u0000b"}', '{"principal_label": ' + '"' + "x" * 257 + '"}',
    '{"principal_quota": [[[[1]]]]}', '{"principal_quota": ' + "[" * 900 + "]" * 900 + "}",
])
def test_a_fact_out_of_range_or_not_unicode_is_a_400_storing_nothing(typed, facts):
    """Body, batch and header go through one validation: a 400, no decision made or logged."""
    before = _logged(typed)
    body = json.dumps({**_share_check(), "context": {"target_account_id": "friend", "facts": "FACTS"}})
    body = body.replace('"FACTS"', facts)
    answers = [typed.client.post(path, data=data, content_type="application/json",
                                 headers={"Authorization": f"Bearer {TOKEN}"})
               for path, data in (("/v1/authorize", body), ("/v1/authorize/batch", '{"checks": [' + body + "]}"))]
    answers.append(typed.call("POST", "/v1/audiences/aud1/shares", {"account_ids": ["friend"]}, account="owner",
                              context=facts))
    for answer in answers:
        assert answer.status_code == 400, (answer.status_code, answer.get_json())
        assert answer.get_json()["error"]["code"] in ("invalid_context_fact", "invalid_context")
        assert "principal_quota" in answer.get_json()["error"]["message"] \
            or "principal_label" in answer.get_json()["error"]["message"] \
            or "nested" in answer.get_json()["error"]["message"]
    assert _logged(typed) == before  # no decision made, none logged
    assert typed.call("GET", "/v1/audiences/aud1/shares", account="owner").get_json()["shares"] == []


def test_facts_at_the_bounds_are_taken(typed):
    before = _logged(typed)
    for facts in ({"principal_quota": 2**63 - 1, "principal_label": "é" * 256}, {"principal_quota": -(2**63)}):
        answer = typed.call("POST", "/v1/audiences/aud1/shares", {"account_ids": ["friend"]}, account="owner",
                            context=facts)
        assert answer.status_code in (200, 201, 403), answer.get_json()
    assert _logged(typed) == before + 2

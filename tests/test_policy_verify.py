"""`audience-authz policy verify`: the properties of policy/properties.yaml proven with z3
over every request, a wrong candidate shown with a counterexample, and a hot reload that
refuses a candidate breaking a property (in its answer, /readyz, the log and a metric)."""

from __future__ import annotations

import itertools
import json
import logging
import shutil
import xml.etree.ElementTree as ET

import pytest
import z3

from audience_authz import contract
from audience_authz.engine.expressions import Compiled
from audience_authz.engine.policy import Policy
from audience_authz.policytools import symbolic
from audience_authz.policytools.reload import Reloader, Snapshots
from tests.support import ROOT
from tests.support.policy import cli, copy_policy, line_of, replace

RESHARE_DENY = "p, recipient, share, True, deny, reshare_forbidden,"
RESHARE_ALLOW = "p, recipient, share, True, allow, recipient_may_reshare,"


def test_the_shipped_properties_are_proven():
    result = cli("policy", "verify")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.startswith(("proven", "FAILED", "ERROR"))]
    assert len(lines) >= 10 and all(line.startswith("proven") for line in lines), result.stdout
    assert result.stdout.splitlines()[-1].startswith(f"{len(lines)} proven, 0 failed, 0 errors")


def test_a_recipient_allowed_to_reshare_is_shown_with_a_counterexample(tmp_path):
    policy = copy_policy(tmp_path / "policy")
    replace(policy / "policy.csv", RESHARE_DENY, RESHARE_ALLOW)
    line = line_of(policy / "policy.csv", RESHARE_ALLOW)
    result = cli("policy", "verify", "--policy-dir", policy)
    assert result.exit_code == 1, result.output
    prop_line = line_of(policy / "properties.yaml", "name: recipient_cannot_manage")
    assert f"FAILED properties.yaml:{prop_line}  recipient_cannot_manage" in result.stdout
    assert ("counterexample: relation recipient, action share, facts principal_known=True" in result.stdout)
    assert f"decided allow recipient_may_reshare by policy.csv:{line} ({RESHARE_ALLOW.rstrip(',')})" in result.stdout
    # the JSON counterexample is a real request: the engine decides it the same way
    data = json.loads(cli("policy", "verify", "--policy-dir", policy, "--format", "json").stdout)
    failed = {p["name"]: p for p in data["properties"] if p["status"] == "failed"}
    assert "recipient_cannot_manage" in failed and not data["ok"]
    example = failed["recipient_cannot_manage"]["counterexample"]
    assert example["deciding_line"] == {"file": "policy.csv", "line": line, "text": RESHARE_ALLOW.rstrip(",")}
    candidate = Policy.load(policy)
    decided = candidate.decide(example["relation"], example["action"], candidate.facts(**example["facts"]))
    assert decided.allowed and decided.rule.line == line


def test_a_property_broken_only_in_a_corner_is_found(tmp_path):
    """Not sampling: the share of a non-shareable source is allowed only when the target is
    in another, allowlisted Business Center and the terms are accepted."""
    policy = copy_policy(tmp_path / "policy")
    replace(policy / "policy.csv", "p, owner, share, r.f.audience_type == \"custom\" and",
            "p, owner, share, not (r.f.owner_bc_allowlisted and not r.f.same_bc) and r.f.audience_type == \"custom\" and")
    result = cli("policy", "verify", "--policy-dir", policy, "--format", "json")
    data = json.loads(result.stdout)
    failed = {p["name"]: p for p in data["properties"] if p["status"] == "failed"}
    assert set(failed) == {"only_shareable_audiences_are_shared"}, result.stdout
    facts = failed["only_shareable_audiences_are_shared"]["counterexample"]["facts"]
    assert facts["owner_bc_allowlisted"] and not facts["same_bc"] and facts["audience_type"] == "custom"
    assert facts["audience_source"] not in ("engagement", "app_activity", "website_traffic", "customer_file", "partner")


def test_an_unprovable_or_vacuous_property_is_an_error(tmp_path):
    policy = copy_policy(tmp_path / "policy")
    with (policy / "properties.yaml").open("a") as f:
        f.write("  - name: vacuous\n    message: never applies\n    when: r.f.target_is_self and not r.f.target_known\n"
                "    then: d.decision == \"allow\"\n"
                "  - name: misspelt\n    message: reads a fact that does not exist\n    then: r.f.no_such_fact\n"
                "  - name: bad_key\n    message: x\n    then: \"True\"\n    relation: [owner]\n")
    result = cli("policy", "verify", "--policy-dir", policy)
    assert result.exit_code == 1
    bad_key = line_of(policy / "properties.yaml", "name: bad_key")
    assert f"properties.yaml:{bad_key}: bad_key: unknown key 'relation'" in result.stdout
    assert "vacuous: `when` holds for no request the service makes" in result.stdout
    assert "'r.f.no_such_fact'" in result.stdout and "is not a fact of facts.yaml" in result.stdout


@pytest.mark.full  # a solver or a reload of its own: seconds each
def test_a_hot_reload_refuses_a_candidate_that_breaks_a_property(tmp_path, caplog):
    policy = copy_policy(tmp_path / "policy")
    reloader = Reloader(policy, Snapshots(tmp_path / "snapshots"), poll=0)
    serving = reloader.initial().policy.version
    replace(policy / "policy.csv", RESHARE_DENY, RESHARE_ALLOW)
    shutil.rmtree(policy / "tests")  # no unit test stands in the way: the properties do
    with caplog.at_level(logging.WARNING, logger="audience_authz.reload"):
        result = reloader.reload("test")
    assert result.status == "refused" and reloader.authz.policy.version == serving, result.problems
    prop_line = line_of(policy / "properties.yaml", "name: recipient_cannot_manage")
    assert any(f == "properties.yaml" and n == prop_line and "counterexample: relation recipient, action share" in m
               for f, n, m in result.problems), result.problems
    assert "refused by verify" in caplog.text and "recipient_cannot_manage" in caplog.text


def test_readyz_and_metrics_show_a_refusal_by_verify(service):
    api = service.client()
    try:
        replace(service.policy_dir / "policy.csv", RESHARE_DENY, RESHARE_ALLOW)
        shutil.rmtree(service.policy_dir / "tests")
        answer = api.post("/v1/policy/reload", {})
        assert answer.status == 422, answer.body
        assert any(p["file"] == "properties.yaml" and "recipient_cannot_manage" in p["message"]
                   for p in answer.body["error"]["problems"])
        ready = api.get("/readyz").body
        assert ready["last_reload_error"]["stage"] == "verify" and ready["status"] == "ready"
        assert 'audience_authz_policy_refusals_total{stage="verify"}' in api.get("/metrics").body
    finally:
        service.restore_policy()


@pytest.mark.full  # a solver or a reload of its own: seconds each
def test_junit_output_of_verify_check_and_test(tmp_path):
    policy = copy_policy(tmp_path / "policy")
    replace(policy / "policy.csv", RESHARE_DENY, RESHARE_ALLOW)
    out = tmp_path / "verify.xml"
    assert cli("policy", "verify", "--policy-dir", policy, "--junit", out).exit_code == 1
    suite = ET.parse(out).getroot().find("testsuite")
    assert suite.get("name") == "policy verify" and int(suite.get("failures")) >= 1
    failed = [c for c in suite.iter("testcase") if c.find("failure") is not None]
    assert "recipient_cannot_manage" in {c.get("name") for c in failed}
    assert all(c.get("file") == "properties.yaml" for c in failed)
    out = tmp_path / "test.xml"
    assert cli("policy", "test", "--policy-dir", policy, "--junit", out).exit_code == 1
    suite = ET.parse(out).getroot().find("testsuite")
    assert int(suite.get("tests")) >= 100 and int(suite.get("failures")) >= 1
    out = tmp_path / "check.xml"
    replace(policy / "policy.csv", RESHARE_ALLOW, "p, recipient, share, True, deny, no_such_reason,")
    assert cli("policy", "check", policy, "--junit", out).exit_code == 1
    case = ET.parse(out).getroot().find("testsuite").find("testcase")
    assert "no_such_reason" in case.find("failure").get("message")
    # and a passing run writes passing cases
    assert cli("policy", "verify", "--junit", out).exit_code == 0
    suite = ET.parse(out).getroot().find("testsuite")
    assert suite.get("failures") == "0" and int(suite.get("tests")) >= 10


# -- the translation is exact: the solver and the engine agree ---------------------------------

def test_every_region_the_solver_finds_is_decided_by_that_line_in_the_engine():
    """For each (relation, action) the service asks, each line that can decide it: a request
    the solver puts in its region is decided by that very line by the engine."""
    policy = Policy.load(ROOT / "policy")
    encoder = symbolic.Encoder(policy)
    checked = 0
    for rel, act in contract.ASKED:
        for region in encoder.regions(rel, act):
            solver = z3.Solver()
            solver.add(*encoder.invariants(act), region.formula)
            if solver.check() != z3.sat:
                continue
            facts = encoder.facts_of(solver.model())
            decided = policy.decide(rel, act, policy.facts(**facts))
            assert (decided.rule.line if decided.rule else None) == (
                region.outcome.rule.line if region.outcome.rule else None), (rel, act, facts)
            checked += 1
    assert checked > 100


EXPRESSIONS = [
    "r.f.n > 0", "r.f.n == True", "r.f.b == 1", "r.f.n", "not r.f.s", "r.f.s in (\"a\", \"\")",
    "r.f.s not in (\"a\", \"b\")", "r.f.s == 1", "r.f.b != r.f.c", "r.f.b < r.f.c", "0 < r.f.n <= 2",
    "r.f.b and r.f.n or not r.f.c", "r.f.s", "\"a\" in r.f.s", "r.f.s < \"b\"", "(r.f.b or r.f.c) == True",
    "r.f.n in (1, True)", "not (r.f.b and not r.f.c)",
]


class _Facts:
    def __init__(self, **values):
        self.__dict__.update(values)


class _R:
    def __init__(self, facts):
        self.f = facts


def test_what_cannot_be_translated_exactly_is_refused(tmp_path):
    policy = copy_policy(tmp_path / "policy")
    with (policy / "facts.yaml").open("a") as f:
        f.write("n: {type: int, default: 0}\ns: {type: str, default: \"\"}\n")
    encoder = symbolic.Encoder(Policy.load(policy))
    for expr in ("(r.f.n or r.f.s) == 1", "r.f.n < r.f.s", "r.f.n in r.f.s"):
        with pytest.raises(symbolic.Unsupported):
            encoder.condition(expr)


@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_conditions_keep_their_python_meaning(expr, tmp_path):
    """Each expression, on a grid of values, is true exactly when Python says so."""
    policy = copy_policy(tmp_path / "policy")
    with (policy / "facts.yaml").open("a") as f:
        f.write("b: {type: bool, default: false}\nc: {type: bool, default: false}\n"
                "n: {type: int, default: 0}\ns: {type: str, default: \"\"}\n")
    encoder = symbolic.Encoder(Policy.load(policy))
    formula = encoder.condition(expr)
    compiled = Compiled(expr)
    for b, c, n, s in itertools.product((False, True), (False, True), (-1, 0, 1, 2, 3), ("", "a", "b", "ab", "c")):
        py = bool(compiled.eval({"r": _R(_Facts(b=b, c=c, n=n, s=s))}))
        v = encoder.vars
        sub = z3.substitute(formula, (v["b"], z3.BoolVal(b)), (v["c"], z3.BoolVal(c)), (v["n"], z3.IntVal(n)),
                            (v["s"], z3.StringVal(s)))
        solver = z3.Solver()
        solver.add(z3.Xor(sub, z3.BoolVal(py)))
        assert solver.check() == z3.unsat, (expr, b, c, n, s, py)

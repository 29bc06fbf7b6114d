"""`audience-authz policy test` and pytest's collection of policy/tests/*.yaml: the shipped
suite passes and covers the policy; broken cases, unknown names and untested rules fail."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from audience_authz.engine.policy import AUDIENCE_ACTIONS, AUDIENCE_RELATIONS, FAULT_REASONS
from tests.support import FIXTURE_POLICY
from tests.support.policy import cli, copy_policy, line_of, replace

POLICY = FIXTURE_POLICY  # the policy the tests serve


def _cases(directory=POLICY) -> list[dict]:
    cases = []
    for path in sorted((directory / "tests").glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        defaults = data.get("defaults", {})
        for case in data["cases"]:
            cases.append({**defaults, **case, "facts": {**defaults.get("facts", {}), **case.get("facts", {})}})
    return cases


def test_the_shipped_suite_passes_with_no_coverage_gaps():
    result = cli("policy", "test")
    assert result.exit_code == 0, result.output
    cases = _cases()
    assert result.stdout.count("\nok ") + result.stdout.startswith("ok ") == len(cases)
    assert f"{len(cases)} passed, 0 failed, 0 errors, 0 coverage gaps" in result.output


def test_the_suite_names_every_reason_code_and_matrix_cell():
    """Read from the files themselves: every deny code a rule (or the lack of one) can give
    and every owner/recipient/none cell is what some case expects; the suite passing (test
    above) then proves the policy gives each of them."""
    cases = _cases()
    codes = set(yaml.safe_load((POLICY / "reasons.yaml").read_text())["deny"])
    expected = {c["reason"] for c in cases if c["decision"] == "deny"}
    assert codes - set(FAULT_REASONS) <= expected, sorted(codes - set(FAULT_REASONS) - expected)
    cells = {(c["relation"], c["action"]) for c in cases}
    assert {(r, a) for r in AUDIENCE_RELATIONS for a in AUDIENCE_ACTIONS} <= cells
    # the effect argument: what an emptied ad group does is pinned down by the suite
    assert any("disconnect_audience:broaden" in c.get("effects", []) for c in cases)


def test_a_new_rule_without_a_test_fails_the_suite(tmp_path):
    policy = copy_policy(tmp_path / "policy")
    replace(policy / "policy.csv", "p, owner, share, True, allow, owner_may_share,",
            "p, owner, share, r.f.owner_bc_allowlisted and not r.f.same_bc, allow, owner_may_share_across,\n"
            "p, owner, share, True, allow, owner_may_share,")
    result = cli("policy", "test", "--policy-dir", policy)
    assert result.exit_code == 1
    line = line_of(policy / "policy.csv", "owner_may_share_across")
    assert f"UNTESTED policy.csv:{line}:1: no passing case is decided by this line" in result.output
    # the case that asked it now fails too: it was decided by the old line
    assert "FAIL  sharing.yaml" in result.output and "owner_may_share_across" in result.output


def test_removed_cases_leave_gaps_for_their_reason_code_and_cell(tmp_path):
    policy = copy_policy(tmp_path / "policy")
    replace(policy / "tests" / "matrix.yaml",
            "  - {name: recipient cannot view the shares, relation: recipient, action: view_shares, decision: deny,"
            " reason: not_owner}\n", "")
    result = cli("policy", "test", "--policy-dir", policy)
    assert result.exit_code == 1
    assert "UNTESTED reasons.yaml: no passing case is denied with 'not_owner'" in result.output
    assert "UNTESTED matrix: no passing case asks (recipient, view_shares)" in result.output
    assert f"UNTESTED policy.csv:{line_of(policy / 'policy.csv', 'deny, not_owner,')}:" in result.output
    assert cli("policy", "test", "--policy-dir", policy, "--no-coverage").exit_code == 0


def _suite_with(tmp_path, case: str):
    policy = copy_policy(tmp_path / "policy")
    (policy / "tests" / "extra.yaml").write_text("cases:\n" + case)
    return policy, cli("policy", "test", "--policy-dir", policy, "--no-coverage")


def test_a_case_naming_an_unknown_fact_is_an_error(tmp_path):
    _, result = _suite_with(tmp_path, "  - {name: typo, relation: owner, action: share,"
                                      " facts: {same_business_center: true}, decision: allow, reason: owner_may_share}\n")
    assert result.exit_code == 1
    assert "ERROR extra.yaml:2:5  typo" in result.output
    assert "unknown fact 'same_business_center': facts.yaml does not declare it" in result.output
    assert "1 errors" in result.output


def test_unknown_names_and_keys_are_errors_not_passes(tmp_path):
    _, result = _suite_with(tmp_path, "\n".join([
        "  - {name: relation, relation: owners, action: view, decision: allow, reason: owner_may_view}",
        "  - {name: action, relation: owner, action: look, decision: deny, reason: no_matching_rule}",
        "  - {name: key, relation: owner, action: view, decison: allow, reason: owner_may_view}",
        "  - {name: type, relation: owner, action: delete, facts: {attached_ad_groups: '1'}, decision: allow,"
        " reason: owner_delete}",
        "  - {name: code, relation: none, action: view, decision: deny, reason: no_acess}",
        "  - {name: rule id, relation: owner, action: view, decision: allow, reason: owner_views}",
        "  - {name: effect, relation: owner, action: edit, decision: allow, reason: owner_may_edit,"
        " effects: [propagate]}",
        "  - {name: argument, relation: owner, action: delete, decision: allow, reason: owner_delete,"
        " effects: [end_share, remove_from_list, 'disconnect_audience:narrow']}",
        ""]))
    assert result.exit_code == 1
    for message in ["unknown relation 'owners'", "unknown action 'look'", "unknown key 'decison'",
                    "missing 'decision'", "fact 'attached_ad_groups' is an int in facts.yaml, not '1'",
                    "reason 'no_acess' is not a deny code of reasons.yaml",
                    "no allow line of policy.csv gives reason 'owner_views'", "unknown effect 'propagate'",
                    "disconnect_audience takes :broaden or :pause"]:
        assert message in result.output, message
    assert f"{len(_cases())} passed, 0 failed, 8 errors" in result.output


def test_allow_unknown_tests_the_default_deny(tmp_path):
    _, result = _suite_with(tmp_path, "  - {name: never asked, relation: owner, action: look, allow_unknown: true,"
                                      " decision: deny, reason: no_matching_rule}\n")
    assert result.exit_code == 0, result.output
    assert "ok    extra.yaml:2:5  never asked" in result.output


def test_a_wrong_expectation_fails_with_what_the_policy_said(tmp_path):
    policy, result = _suite_with(tmp_path, "  - {name: wishful, relation: recipient, action: share,"
                                           " facts: {target_specified: true, target_known: true}, decision: allow,"
                                           " reason: owner_may_share}\n")
    assert result.exit_code == 1
    line = line_of(policy / "policy.csv", "p, recipient, share, True")
    assert "FAIL  extra.yaml:2:5  wishful" in result.output
    assert (f"expected allow (owner_may_share), got deny (reshare_forbidden) from policy.csv:{line}"
            in result.output)


def test_switching_emptied_ad_groups_to_pause_fails_the_broaden_cases(tmp_path):
    policy = copy_policy(tmp_path / "policy")
    text = (policy / "policy.csv").read_text()
    (policy / "policy.csv").write_text(text.replace("disconnect_audience:broaden", "disconnect_audience:pause"))
    result = cli("policy", "test", "--policy-dir", policy, "--quiet")
    assert result.exit_code == 1
    failed = [line for line in result.output.splitlines() if line.startswith("FAIL")]
    broaden_cases = [c for c in _cases() if "disconnect_audience:broaden" in c.get("effects", [])]
    assert len(failed) == len(broaden_cases)
    assert "got ['end_share', 'remove_from_list', 'disconnect_audience:pause']" in result.output


@pytest.mark.full  # pytest in a child process: the full tier
def test_pytest_collects_the_yaml_cases_and_reports_a_failure(tmp_path):
    policy = copy_policy(tmp_path / "policy")
    replace(policy / "policy.csv", "p, recipient, share, True, deny, reshare_forbidden,",
            "p, recipient, share, True, allow, recipient_may_share,")
    (policy / "tests" / "extra.yaml").write_text(
        "cases:\n  - {name: typo, relation: owner, action: view, facts: {sane_bc: true}, decision: allow,"
        " reason: owner_may_view}\n")
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(policy)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "FAILED policy/tests/matrix.yaml::recipient cannot re-share" in run.stdout
    assert "expected deny (reshare_forbidden), got allow (recipient_may_share)" in run.stdout
    assert "FAILED policy/tests/extra.yaml::typo" in run.stdout
    assert "unknown fact 'sane_bc'" in run.stdout
    # and each property of properties.yaml is an item too (those the change breaks fail), and
    # the contract with the code one more
    from audience_authz.engine.policy import Policy
    from audience_authz.policytools import verify
    proofs = verify.run(Policy.load(policy)).results
    broken = sum(r.status != "proven" for r in proofs)
    assert broken and "FAILED policy/properties.yaml::recipient_cannot_manage" in run.stdout
    assert f"{2 + broken} failed, {len(_cases(policy)) - 2 + len(proofs) - broken + 1} passed" in run.stdout

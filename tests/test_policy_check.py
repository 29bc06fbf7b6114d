"""`audience-authz policy check`: a copy of policy/ broken in each way it can be, each problem
reported with its file, line and column (tests/test_policy_messages.py: the wording)."""

from __future__ import annotations

import re

import pytest

from tests.support.policy import cli, copy_policy, line_of, replace

# (what breaks, the edit, the file and the text of the line the problem is on, the message)
SHARE_ALLOW = "p, owner, share, True, allow, owner_may_share,"
BREAKAGES = [
    ("unknown deny reason", ("policy.csv", "deny, reshare_forbidden,", "deny, no_resharing,"),
     ("policy.csv", "no_resharing"), "reason 'no_resharing' is not listed in reasons.yaml"),
    ("unknown effect", ("policy.csv", "owner_may_edit, propagate_update", "owner_may_edit, propagate"),
     ("policy.csv", "owner_may_edit"), "unknown effect 'propagate'"),
    ("bad effect argument", ("policy.csv", "owner_stop_sharing, end_share remove_from_list disconnect_audience:broaden",
                             "owner_stop_sharing, end_share remove_from_list disconnect_audience:narrow"),
     ("policy.csv", "owner_stop_sharing"), "disconnect_audience takes broaden or pause, not 'narrow'"),
    ("effects on a deny", ("policy.csv", "deny, reshare_forbidden,", "deny, reshare_forbidden, end_share"),
     ("policy.csv", "reshare_forbidden"), "a deny line carries no effects"),
    ("unknown fact", ("policy.csv", "r.f.seed_status != \"active\"", "r.f.seed_state != \"active\""),
     ("policy.csv", "seed_state"),
     "unknown fact 'seed_state' (r.f.seed_state): facts.yaml does not declare it; did you mean seed_status?"),
    ("bad condition", ("policy.csv", "r.f.attached_ad_groups > 0", "r.f.attached_ad_groups >"),
     ("policy.csv", "r.f.attached_ad_groups >"), "this does not read as a condition at column"),
    ("unsafe condition", ("policy.csv", "r.f.attached_ad_groups > 0", "r.f.__class__"),
     ("policy.csv", "r.f.__class__"), "unknown fact '__class__' (r.f.__class__): facts.yaml does not declare it"),
    ("unknown action", ("policy.csv", "p, owner, share, r.f.target_is_self", "p, owner, shares, r.f.target_is_self"),
     ("policy.csv", "p, owner, shares"), "unknown action 'shares'"),
    ("unknown relation", ("policy.csv", "p, *, apply, r.f.ad_group_specified and not r.f.ad_group_owned",
                          "p, anyone, apply, r.f.ad_group_specified and not r.f.ad_group_owned"),
     ("policy.csv", "p, anyone, apply"), "unknown relation 'anyone'"),
    ("bad eft", ("policy.csv", "p, owner, view, True, allow", "p, owner, view, True, permit"),
     ("policy.csv", "p, owner, view, True, permit"), "eft must be allow or deny, not 'permit'"),
    ("exact duplicate", ("policy.csv", "p, recipient, share, True, deny, reshare_forbidden,\n",
                         "p, recipient, share, True, deny, reshare_forbidden,\n"
                         "p, recipient, share,  True,  deny, reshare_forbidden,\n"),
     ("policy.csv", "share,  True"), "never decides: it repeats line {recipient_share}"),
    ("after an unconditional line", ("policy.csv", SHARE_ALLOW + "\n",
                                     SHARE_ALLOW + "\np, owner, share, r.f.same_bc, deny, not_same_business_center,\n"),
     ("policy.csv", "r.f.same_bc, deny"), "never decides: line {share_allow} (p, owner, share, True) decides every request"),
    ("shadowed by an earlier condition", ("policy.csv", SHARE_ALLOW + "\n",
                                          "p, owner, share, r.f.target_is_self and r.f.same_bc, deny, share_to_self,\n"
                                          + SHARE_ALLOW + "\n"),
     ("policy.csv", "r.f.target_is_self and r.f.same_bc"),
     "never decides: line(s) {share_to_self} before it match every request"),
    ("condition that never holds", ("policy.csv", SHARE_ALLOW + "\n",
                                    "p, owner, share, r.f.audience_type == \"custom\" and r.f.audience_type == \"lookalike\","
                                    " deny, audience_not_shareable,\n" + SHARE_ALLOW + "\n"),
     ("policy.csv", "r.f.audience_type == \"lookalike\","), "never decides: its condition"),
    ("a matrix cell no line decides", ("policy.csv", SHARE_ALLOW + "\n", ""),
     ("policy.csv", None), "no line decides (owner, share) when"),
    ("a recipient cell no line decides", ("policy.csv", "p, recipient, edit, True, deny, recipient_action_forbidden,\n", ""),
     ("policy.csv", None), "no line decides (recipient, edit) when every fact has its default"),
    ("first-match effect replaced", ("model.conf", "e = priority(p.eft) || deny", "e = some(where (p.eft == allow))"),
     ("model.conf", "e = some"), "[policy_effect] must be e = priority(p.eft) || deny"),
    ("a policy column dropped", ("model.conf", "p = rel, act, cond, eft, reason, effects", "p = rel, act, cond, eft, reason"),
     ("model.conf", "p = rel"), "[policy_definition] must be p = rel, act, cond, eft, reason, effects"),
    ("a matcher that does not parse", ("model.conf", "&& holds(p.cond, r.f)", "&& holds(p.cond, r.f"),
     ("model.conf", "m = "), "the matcher does not parse"),
    ("a matcher that skips lines",
     ("model.conf", "&& holds(p.cond, r.f)", "&& holds(p.cond, r.f) && p.reason != \"owner_may_view\""),
     ("model.conf", "m = "), "not by policy.csv line {owner_view} as a first-match list would"),
    ("a fact of unknown type", ("facts.yaml", "same_bc: {type: bool", "same_bc: {type: boolean"),
     ("facts.yaml", "same_bc:"), "fact 'same_bc': type must be one of bool, int, str, not 'boolean'"),
    ("a default of the wrong type", ("facts.yaml", "attached_ad_groups: {type: int, default: 0",
                                     "attached_ad_groups: {type: int, default: none"),
     ("facts.yaml", "attached_ad_groups:"), "fact 'attached_ad_groups': default must be an int, not 'none'"),
    ("a reason code without a message", ("reasons.yaml", "  share_to_self: An account cannot share an audience with itself.",
                                         "  share_to_self:"),
     ("reasons.yaml", "share_to_self:"), "reason code 'share_to_self' needs a message"),
    ("the service's own code dropped",
     ("reasons.yaml", "  no_matching_rule: No policy rule matched this request (default deny).\n", ""),
     ("reasons.yaml", "deny:"), "the service gives 'no_matching_rule'; list it"),
    ("YAML that does not parse", ("reasons.yaml", "  seed_deleted: The", "  seed_deleted: [The"),
     ("reasons.yaml", None), "not valid YAML"),
]


def test_the_shipped_policy_passes():
    result = cli("policy", "check")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "policy OK"


@pytest.mark.parametrize("edit, where, message", [b[1:] for b in BREAKAGES], ids=[b[0] for b in BREAKAGES])
def test_each_problem_is_reported_with_file_and_line(tmp_path, edit, where, message):
    policy = copy_policy(tmp_path / "policy")
    lines = {  # lines of the shipped policy that messages name
        "recipient_share": line_of(policy / "policy.csv", "p, recipient, share, True"),
        "share_allow": line_of(policy / "policy.csv", SHARE_ALLOW),
        "share_to_self": line_of(policy / "policy.csv", "deny, share_to_self,"),
        "owner_view": line_of(policy / "policy.csv", "p, owner, view, True"),
    }
    file, old, new = edit
    replace(policy / file, old, new)
    result = cli("policy", "check", policy)
    assert result.exit_code == 1, result.output
    where_file, where_text = where
    expected_line = line_of(policy / where_file, where_text) if where_text else None
    problems = [line for line in result.stdout.splitlines() if line.startswith(f"{where_file}:")]
    matching = [p for p in problems if message.format(**lines) in p]
    assert matching, f"no problem says {message.format(**lines)!r}:\n{result.output}"
    if expected_line is not None:
        assert re.match(rf"{re.escape(where_file)}:{expected_line}:\d+: ", matching[0]), result.output
    # the one breakage is all that is reported: nothing else in the copy is wrong
    assert len(result.stdout.splitlines()) == 1, result.output


def test_a_missing_file(tmp_path):
    policy = copy_policy(tmp_path / "policy")
    (policy / "reasons.yaml").unlink()
    result = cli("policy", "check", policy)
    assert result.exit_code == 1
    assert result.stdout.splitlines() == ["reasons.yaml:1:1: file is missing"]


def test_past_the_search_budget_the_report_says_it_is_no_proof(tmp_path, monkeypatch):
    import audience_authz.policytools.check

    monkeypatch.setattr(audience_authz.policytools.check, "POINT_BUDGET", 40)
    policy = copy_policy(tmp_path / "policy")
    replace(policy / "policy.csv", SHARE_ALLOW + "\n",
            "p, owner, share, r.f.target_is_self and r.f.same_bc, deny, share_to_self,\n" + SHARE_ALLOW + "\n")
    result = cli("policy", "check", policy)
    line = line_of(policy / "policy.csv", "r.f.target_is_self and r.f.same_bc")
    reported = [p for p in result.stdout.splitlines() if re.match(rf"policy.csv:{line}:\d+: never decides:", p)]
    assert reported and reported[0].endswith(
        "(not a proof: the search stopped after the 40 requests per action nearest the defaults)"), result.output


def test_a_wildcard_line_that_only_requests_never_asked_reach_is_dead(tmp_path):
    """After the lines of every relation the service asks about, a ``*`` line matches only
    pairs it never asks, such as (self, view): dead, as the same line with a relation is."""
    policy = copy_policy(tmp_path / "policy")
    recipient_view = "p, recipient, view, True, allow, recipient_may_view,"
    replace(policy / "policy.csv", recipient_view, recipient_view + "\np, *, view, True, deny, no_access,")
    dead = line_of(policy / "policy.csv", "p, *, view, True, deny, no_access,")
    result = cli("policy", "check", "--policy-dir", str(policy))
    assert result.exit_code == 1
    assert re.search(rf"^policy\.csv:{dead}:\d+: never decides: every request it matches is decided first by one"
                     r" of lines [\d, ]+$", result.stdout, re.M), result.stdout

"""The policy tools speak the policy's language: every message of `policy check` and `policy
test` names file, line and column, says what was expected in the files' own terms, offers
"did you mean" for names, and puts the cause before what follows from it. Through the CLI,
on copies of policy/ broken as an author would break them."""

from __future__ import annotations

import re

import pytest

from tests.support.policy import cli, copy_policy, line_of, replace

LOCATED = re.compile(r"^(model\.conf|policy\.csv|facts\.yaml|reasons\.yaml):([1-9]\d*):([1-9]\d*): \S")
SHARE_ALLOW = "p, owner, share, True, allow, owner_may_share,"
ALREADY_SHARED = "p, owner, share, r.f.target_has_share, deny, already_shared,"
PYTHON_WORDS = ("NameError", "SyntaxError", "TypeError", "invalid syntax", "Traceback", "is not defined")


@pytest.fixture
def policy(tmp_path):
    return copy_policy(tmp_path / "policy")


def _check(policy) -> list[str]:
    result = cli("policy", "check", policy)
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    for line in lines:  # every message: file:line:column, in the policy's words
        assert LOCATED.match(line), line
        assert not any(word in line for word in PYTHON_WORDS), line
    return lines


def _column(policy, file: str, line: int, text: str) -> int:
    return (policy / file).read_text().splitlines()[line - 1].index(text) + 1


def _edit_line(policy, old: str, new: str) -> int:
    replace(policy / "policy.csv", old, new)
    return line_of(policy / "policy.csv", new.splitlines()[0])


def test_lowercase_false_is_named_with_its_column_and_fix(policy):
    line = _edit_line(policy, ALREADY_SHARED, "p, owner, share, r.f.target_has_share == false, deny, already_shared,")
    column = _column(policy, "policy.csv", line, "false")
    assert _check(policy) == [
        f"policy.csv:{line}:{column}: unknown name 'false' in the condition: did you mean False?"]


def test_policy_test_reports_the_condition_not_a_python_error_per_case(policy):
    line = _edit_line(policy, ALREADY_SHARED, "p, owner, share, r.f.target_has_share == false, deny, already_shared,")
    result = cli("policy", "test", "--policy-dir", policy, "-q")
    assert result.exit_code == 1
    column = _column(policy, "policy.csv", line, "false")
    assert result.stdout.splitlines() == [
        f"policy.csv:{line}:{column}: unknown name 'false' in the condition: did you mean False?"]
    assert "no case was run" in result.stderr


@pytest.mark.parametrize(("condition", "at", "message"), [
    ("r.f.target_has_share = True", "= True", "'=' in the condition: to compare, write '=='"),
    ("r.f.target_has_share && r.f.same_bc", "&&", "'&&' in the condition: write and"),
    ("r.f.target_has_share || r.f.same_bc", "||", "'||' in the condition: write or"),
    ("!r.f.target_has_share", "!", "'!' in the condition: write not"),
    ("r.f.target_has_share r.f.same_bc", "r.f.same_bc",
     "this does not read as a condition at column {column} (near 'r.f.same_bc'): a condition compares facts"),
    ("(r.f.target_has_share", "(", "'(' is never closed, so the commas after it do not separate columns:"
     " expected 6 columns (rel, act, cond, eft, reason, effects), found 3"),
    ("r.f.attached_ad_groups > \"0\"", "\"0\"",
     "compares fact 'attached_ad_groups' (a number in facts.yaml) with '0' (a string), which never matches;"
     " did you mean 0?"),
    ("r.f.target_has_share == \"true\"", "\"true\"", "did you mean True?"),
    ("r.f.audience_type == lookalike", "lookalike",
     "unknown name 'lookalike' in the condition; did you mean \"lookalike\" (a string, in quotes)?"),
    ("target_has_share", "target_has_share", "unknown name 'target_has_share' in the condition: did you mean"
     " r.f.target_has_share?"),
    ("r.f.target_has_shares", "r.f.target_has_shares", "unknown fact 'target_has_shares' (r.f.target_has_shares):"
     " facts.yaml does not declare it; did you mean target_has_share?"),
    ("r.rel == \"owner\"", "r.rel", "the condition reads 'r.rel': a condition reads only facts (r.f.<name>)"),
    ("r.f.attached_ad_groups + 1 > 1", "r.f.attached_ad_groups + 1",
     "'r.f.attached_ad_groups + 1' is not part of the condition language"),
])
def test_a_bad_condition_is_explained_in_the_condition_language(policy, condition, at, message):
    line = _edit_line(policy, ALREADY_SHARED, f"p, owner, share, {condition}, deny, already_shared,")
    column = _column(policy, "policy.csv", line, at)
    problems = _check(policy)
    assert problems[0].startswith(f"policy.csv:{line}:{column}: "), problems
    assert message.format(column=column) in problems[0], problems


@pytest.mark.parametrize(("old", "new", "at", "message"), [
    (SHARE_ALLOW, "p, owner, shar, True, allow, owner_may_share,", "shar,", "unknown action 'shar'; did you mean share?"),
    (SHARE_ALLOW, "p, ownr, share, True, allow, owner_may_share,", "ownr", "unknown relation 'ownr'; did you mean owner?"),
    (ALREADY_SHARED, "p, owner, share, r.f.target_has_share, deny, already_share,", "already_share,",
     "reason 'already_share' is not listed in reasons.yaml; did you mean already_shared?"),
    (SHARE_ALLOW, "p, owner, share, True, alow, owner_may_share,", "alow", "eft must be allow or deny, not 'alow';"
     " did you mean allow?"),
    ("owner_may_edit, propagate_update", "owner_may_edit, propagate_updates", "propagate_updates",
     "unknown effect 'propagate_updates'; did you mean propagate_update?"),
])
def test_a_misspelt_name_gets_did_you_mean_at_its_column(policy, old, new, at, message):
    replace(policy / "policy.csv", old, new)
    line = line_of(policy / "policy.csv", new)
    column = _column(policy, "policy.csv", line, at)
    problems = _check(policy)
    assert any(p.startswith(f"policy.csv:{line}:{column}: {message}") for p in problems), problems


def test_the_cause_comes_before_what_follows_from_it(policy):
    """A misspelt action leaves the owner's shares undecided: the typo is reported first."""
    replace(policy / "policy.csv", SHARE_ALLOW, "p, owner, shar, True, allow, owner_may_share,")
    problems = _check(policy)
    assert "unknown action 'shar'" in problems[0] and "no line decides (owner, share)" in problems[1], problems


def test_an_undecided_cell_is_on_the_line_where_the_missing_line_belongs(policy):
    replace(policy / "policy.csv", SHARE_ALLOW + "\n", "")
    last = line_of(policy / "policy.csv", ALREADY_SHARED)
    problems = _check(policy)
    assert problems == [
        f"policy.csv:{last}:1: no line decides (owner, share) when owner_bc_allowlisted=True, target_in_bc=True,"
        " target_known=True: such requests are denied as no_matching_rule; add a line after line"
        f" {last} that decides them (e.g. p, owner, share, True, deny, <reason>,)"]


def test_a_shadowed_line_with_another_answer_is_not_called_a_repeat(policy):
    replace(policy / "policy.csv", ALREADY_SHARED + "\n",
            ALREADY_SHARED + "\np, owner, share, r.f.target_has_share, allow, share_again, end_share\n")
    first = line_of(policy / "policy.csv", ALREADY_SHARED)
    problems = _check(policy)
    assert problems == [
        f"policy.csv:{first + 1}:1: never decides: line {first} (p, owner, share, r.f.target_has_share) has the"
        " same condition and comes first, so it answers deny already_shared where this line would answer"
        " allow share_again with end_share"]
    assert "repeats" not in problems[0]


@pytest.mark.parametrize(("old", "new", "at", "message"), [
    ("same_bc: {type: bool, default: false,", "same_bc: {type: bool, default: \"false\",", "same_bc",
     "fact 'same_bc': default must be a bool, not 'false' (write true or false without quotes)"),
    ("same_bc: {type: bool, default: false,", "same_bc: {type: bool, defualt: false,", "same_bc",
     "fact 'same_bc': unknown key 'defualt'; did you mean default?"),
    ("same_bc: {type: bool,", "same_bc: {type: boolean,", "same_bc",
     "fact 'same_bc': type must be one of bool, int, str, not 'boolean'; did you mean bool?"),
])
def test_facts_yaml_messages(policy, old, new, at, message):
    replace(policy / "facts.yaml", old, new)
    line = line_of(policy / "facts.yaml", new)
    problems = _check(policy)
    assert any(p.startswith(f"facts.yaml:{line}:1: {message}") for p in problems), problems


def test_yaml_that_does_not_parse_has_its_column(policy):
    replace(policy / "reasons.yaml", "  seed_deleted: The", "  seed_deleted: [The")
    problems = _check(policy)
    assert len(problems) == 1 and re.match(r"reasons\.yaml:\d+:\d+: not valid YAML", problems[0]), problems


def test_a_missing_file_is_on_line_one(policy):
    (policy / "facts.yaml").unlink()
    assert _check(policy) == ["facts.yaml:1:1: file is missing"]


@pytest.mark.parametrize(("case", "message"), [
    ("{name: t, relation: owner, action: share, facts: {same_bcc: true}, decision: allow, reason: owner_may_share}",
     "unknown fact 'same_bcc': facts.yaml does not declare it; did you mean same_bc?"),
    ("{name: t, relation: owner, action: shar, decision: allow, reason: owner_may_share}",
     "unknown action 'shar'; did you mean share?"),
    ("{name: t, relation: ownr, action: share, decision: allow, reason: owner_may_share}",
     "unknown relation 'ownr'; did you mean owner?"),
    ("{name: t, relation: owner, action: share, decision: deny, reason: already_share}",
     "reason 'already_share' is not a deny code of reasons.yaml; did you mean already_shared?"),
    ("{name: t, relation: owner, action: share, decision: allow, reason: owner_may_shar}",
     "no allow line of policy.csv gives reason 'owner_may_shar'; did you mean owner_may_share?"),
    ("{name: t, relation: owner, action: delete, facts: {attached_ad_groups: \"1\"}, decision: allow, reason: owner_delete}",
     "fact 'attached_ad_groups' is an int in facts.yaml, not '1' (write 1 without quotes)"),
    ("{name: t, relation: owner, action: share, decison: allow, reason: owner_may_share}",
     "unknown key 'decison'; did you mean decision?"),
])
def test_policy_test_messages_name_the_case_and_offer_a_fix(policy, case, message):
    (policy / "tests" / "extra.yaml").write_text(f"cases:\n  - {case}\n")
    result = cli("policy", "test", "--policy-dir", policy, "-q", "--no-coverage")
    assert result.exit_code == 1
    assert "ERROR extra.yaml:2:5  t" in result.output, result.output
    assert message in result.output, result.output

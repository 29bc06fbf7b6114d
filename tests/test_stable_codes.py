"""Reason codes are stable API: renaming or removing a published code fails `policy check`
(against the git revision of the files, or a given published policy), a hot reload (against
the policy serving) and `policy diff` (against the policy in force), unless reasons.yaml
retires it (`replaced_by:` or `deprecated:`); `policy diff` lists retired codes first. All
on copies of the fixture policy."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.support.policy import cli, copy_policy, line_of, replace

OLD, NEW = "reshare_forbidden", "recipient_cannot_reshare"


def _rename(policy, retire: str | None = None) -> None:
    """``OLD`` becomes ``NEW`` in the policy's line, its message and its tests; ``retire``
    is the entry kept under retired: (None: the old code is simply gone)."""
    replace(policy / "policy.csv", f"deny, {OLD},", f"deny, {NEW},")
    replace(policy / "reasons.yaml", f"  {OLD}:", f"  {NEW}:")
    for case_file in (policy / "tests").glob("*.yaml"):
        case_file.write_text(case_file.read_text().replace(OLD, NEW))
    if retire is not None:
        with (policy / "reasons.yaml").open("a") as reasons:
            reasons.write(f"retired:\n  {OLD}: {retire}\n")


@pytest.fixture
def published(tmp_path):
    return copy_policy(tmp_path / "published")


@pytest.fixture
def candidate(tmp_path):
    return copy_policy(tmp_path / "candidate")


def test_a_rename_without_retiring_fails_check_a_declared_one_passes(published, candidate):
    _rename(candidate)
    assert cli("policy", "check", "--policy-dir", candidate).exit_code == 0  # nothing says what was published
    result = cli("policy", "check", "--policy-dir", candidate, "--published-dir", published)
    assert result.exit_code == 1
    assert f"reasons.yaml:1:1: reason code '{OLD}' was published ({published}) and is gone" in result.stdout
    assert "keep it under retired: with {replaced_by: <new code>} or {deprecated: <why>}" in result.stdout

    with (candidate / "reasons.yaml").open("a") as reasons:
        reasons.write(f"retired:\n  {OLD}: {{replaced_by: {NEW}}}\n")
    assert cli("policy", "check", "--policy-dir", candidate, "--published-dir", published).output.strip() == "policy OK"
    assert cli("policy", "test", "--policy-dir", candidate).exit_code == 0


def test_removing_a_code_needs_a_deprecation_saying_why(published, candidate):
    replace(candidate / "reasons.yaml", "  not_lookalike: Only a lookalike audience can be refreshed.\n", "")
    replace(candidate / "policy.csv", 'p, owner, refresh_lookalike, r.f.audience_type != "lookalike", deny, not_lookalike,\n',
            'p, owner, refresh_lookalike, r.f.audience_type != "lookalike", deny, seed_deleted,\n')
    result = cli("policy", "check", "--policy-dir", candidate, "--published-dir", published)
    assert result.exit_code == 1 and "reason code 'not_lookalike' was published" in result.stdout
    with (candidate / "reasons.yaml").open("a") as reasons:
        reasons.write("retired:\n  not_lookalike: {deprecated: ''}\n")
    said = cli("policy", "check", "--policy-dir", candidate, "--published-dir", published)
    assert "retired code 'not_lookalike': say why it is deprecated" in said.stdout
    replace(candidate / "reasons.yaml", "{deprecated: ''}", "{deprecated: refresh answers seed_deleted instead}")
    assert cli("policy", "check", "--policy-dir", candidate, "--published-dir", published).exit_code == 0


@pytest.mark.parametrize("entry, message", [
    (f"{{replaced_by: {NEW}}}\n  {NEW}: {{deprecated: twice}}", f"reason code '{NEW}' is both in deny: and retired:"),
    ("{replaced_by: no_such_code}", f"retired code '{OLD}' is replaced by 'no_such_code', which is not a code of deny:"),
    ("{replaced_by: x, deprecated: y}", f"retired code '{OLD}': give {{replaced_by: <code>}} or {{deprecated: <why>}}"),
    ("gone", f"retired code '{OLD}': give {{replaced_by: <code>}} or {{deprecated: <why>}}"),
])
def test_a_retired_entry_must_say_what_became_of_the_code(candidate, entry, message):
    _rename(candidate, retire=entry)
    result = cli("policy", "check", "--policy-dir", candidate)
    assert result.exit_code == 1 and message in result.stdout, result.stdout


def test_a_line_cannot_give_a_retired_code(candidate):
    _rename(candidate, retire=f"{{replaced_by: {NEW}}}")
    replace(candidate / "policy.csv", f"deny, {NEW},", f"deny, {OLD},")
    line = line_of(candidate / "policy.csv", f"deny, {OLD},")
    result = cli("policy", "check", "--policy-dir", candidate)
    assert result.exit_code == 1
    assert f"policy.csv:{line}:" in result.stdout
    assert f"reason '{OLD}' is retired in reasons.yaml; give its replacement '{NEW}'" in result.stdout


def test_check_reads_what_was_published_from_git(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    policy = copy_policy(repo / "policy")
    git = ["git", "-C", str(repo), "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True, timeout=60)
    subprocess.run([*git, "add", "-A"], check=True, timeout=60)
    subprocess.run([*git, "commit", "-qm", "published"], check=True, timeout=60)
    _rename(policy)
    result = cli("policy", "check", "--policy-dir", policy)  # against HEAD
    assert result.exit_code == 1 and f"reason code '{OLD}' was published (git HEAD) and is gone" in result.stdout
    subprocess.run([*git, "commit", "-qam", "renamed"], check=True, timeout=60)
    assert cli("policy", "check", "--policy-dir", policy).exit_code == 0  # HEAD has the rename now
    earlier = cli("policy", "check", "--policy-dir", policy, "--published-rev", "HEAD~1")  # what CI gives: the base
    assert earlier.exit_code == 1 and f"'{OLD}' was published (git HEAD~1)" in earlier.stdout
    unknown = cli("policy", "check", "--policy-dir", policy, "--published-rev", "no-such-rev")
    assert unknown.exit_code == 2 and "git does not know the revision 'no-such-rev'" in unknown.output


def test_diff_lists_retired_codes_first_and_refuses_an_undeclared_rename(server, published, candidate):
    _rename(candidate, retire=f"{{replaced_by: {NEW}}}")
    args = ("policy", "diff", "--candidate", candidate, "--policy-dir", published, "--database", server.database_url,
            "--last", "5")
    text = cli(*args)
    assert text.exit_code == 0, text.output
    assert text.stdout.splitlines()[:2] == ["Reason codes retired: 1 (callers matching on them must change).",
                                            f"  {OLD} -> {NEW}"]
    report = json.loads(cli(*args, "--format", "json").stdout)
    assert list(report)[0] == "retired_codes" and report["retired_codes"] == [{"code": OLD, "replaced_by": NEW}]

    undeclared = copy_policy(candidate.parent / "undeclared")
    _rename(undeclared)
    refused = cli("policy", "diff", "--candidate", undeclared, "--policy-dir", published, "--database",
                  server.database_url, "--last", "5")
    assert refused.exit_code == 2
    assert refused.stdout.startswith(f"reasons.yaml:1:1: reason code '{OLD}' was published (by the policy in force)")


def test_a_hot_reload_refuses_dropping_a_code_the_serving_policy_gives(service):
    api = service.client()
    serving = service.authz.policy.version
    try:
        _rename(service.policy_dir)
        refused = api.post("/v1/policy/reload", {})
        assert refused.status == 422 and refused.body["error"]["code"] == "policy_refused"
        assert any(p["file"] == "reasons.yaml" and f"reason code '{OLD}' was published (by the policy serving" in p["message"]
                   for p in refused.body["error"]["problems"]), refused.body
        assert refused.body["policy_version"] == serving
        with (service.policy_dir / "reasons.yaml").open("a") as reasons:
            reasons.write(f"retired:\n  {OLD}: {{replaced_by: {NEW}}}\n")
        loaded = api.post("/v1/policy/reload", {})
        assert loaded.status == 200 and loaded.body["policy_version"] != serving, loaded.body
        # going back retires the new code in turn (a retired entry may then go: it is given no more)
        shutil.rmtree(service.policy_dir)
        copy_policy(service.policy_dir)
        with (service.policy_dir / "reasons.yaml").open("a") as reasons:
            reasons.write(f"retired:\n  {NEW}: {{deprecated: the rename was rolled back}}\n")
        assert api.post("/v1/policy/reload", {}).status == 200
    finally:
        service.restore_policy()


def test_the_diff_endpoint_refuses_a_dropped_code_and_lists_retired_ones(api, candidate):
    _rename(candidate)
    files = {name: (candidate / name).read_text() for name in ("policy.csv", "reasons.yaml")}
    refused = api.post("/v1/policy/diff", {"files": files, "last": 5})
    assert refused.status == 422 and refused.body["error"]["code"] == "policy_refused"
    assert refused.body["error"]["problems"][0]["message"].startswith(f"reason code '{OLD}' was published (by the"
                                                                      " policy serving")
    files["reasons.yaml"] += f"retired:\n  {OLD}: {{replaced_by: {NEW}}}\n"
    answer = api.ok(api.post("/v1/policy/diff", {"files": files, "last": 5}))
    assert list(answer)[0] == "retired_codes" and answer["retired_codes"] == [{"code": OLD, "replaced_by": NEW}]

"""The policy commands speak one way: --policy-dir names the policy everywhere, a test
path is never read as a policy, and `policy diff` reads the configured database and never
creates one."""

from __future__ import annotations

import os

from tests.support.policy import RECIPIENT_REFRESH_DENY, cli, copy_policy, replace


def test_every_policy_subcommand_takes_policy_dir(tmp_path):
    policy = copy_policy(tmp_path / "mine")
    assert cli("policy", "check", "--policy-dir", policy).stdout.strip() == "policy OK"
    assert cli("policy", "test", "--policy-dir", policy, "-q").exit_code == 0
    assert cli("policy", "matrix", "--policy-dir", policy).exit_code == 0
    for command in (["check"], ["test"], ["matrix"], ["diff"]):
        assert "--policy-dir" in cli("policy", *command, "--help").stdout, command


def test_policy_check_dir_still_works_and_says_it_is_deprecated(tmp_path):
    policy = copy_policy(tmp_path / "mine")
    replace(policy / "policy.csv", RECIPIENT_REFRESH_DENY, RECIPIENT_REFRESH_DENY.replace("recipient_action", "x"))
    old = cli("policy", "check", policy)
    assert old.exit_code == 1 and "x_forbidden" in old.stdout
    assert "deprecated" in old.stderr and "--policy-dir" in old.stderr
    new = cli("policy", "check", "--policy-dir", policy)
    assert new.exit_code == 1 and new.stdout == old.stdout
    other = copy_policy(tmp_path / "other")
    both = cli("policy", "check", "--policy-dir", other, policy)
    assert both.exit_code == 2 and "once" in both.output


def test_policy_test_refuses_a_policy_directory_as_its_tests(tmp_path):
    candidate = copy_policy(tmp_path / "candidate")
    confused = cli("policy", "test", candidate)
    assert confused.exit_code == 2
    assert f"--policy-dir {candidate}" in confused.output and "is a policy directory" in confused.output
    assert cli("policy", "test", candidate / "tests", "--policy-dir", candidate, "-q").exit_code == 0


def test_policy_diff_reads_the_configured_database_and_never_creates_one(tmp_path, monkeypatch):
    candidate = copy_policy(tmp_path / "candidate")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AUDIENCE_AUTHZ_DATABASE", raising=False)
    missing = cli("policy", "diff", "--candidate", candidate, "--last", "5")
    assert missing.exit_code == 2 and "no database at audience-authz.db" in missing.output
    assert not (tmp_path / "audience-authz.db").exists()  # the default file was not created
    elsewhere = tmp_path / "nowhere" / "authz.db"
    monkeypatch.setenv("AUDIENCE_AUTHZ_DATABASE", f"sqlite:///{elsewhere}")
    configured = cli("policy", "diff", "--candidate", candidate, "--last", "5")
    assert configured.exit_code == 2 and f"no database at {elsewhere}" in configured.output
    assert not elsewhere.exists() and not os.path.exists(tmp_path / "audience-authz.db")
    # the configured database, when it exists, is the one read
    real = tmp_path / "real.db"
    assert cli("migrate", "--database", f"sqlite:///{real}").exit_code == 0
    monkeypatch.setenv("AUDIENCE_AUTHZ_DATABASE", f"sqlite:///{real}")
    read = cli("policy", "diff", "--candidate", candidate, "--last", "5")
    assert read.exit_code == 0, read.output
    assert "Replayed 0 decision(s)" in read.stdout

"""A policy author's ordinary edits, made in policy/ alone, keep the whole fast tier green.

Three changes an author makes without Python (docs/policy-authoring.md): lookalikes never
cross Business Centers, a new deny code ``lookalike_seed_inactive``, and a caller's fact
``account_suspended`` ("a suspended account cannot share or apply"), each with its policy
tests. Applied to a copy of the repository, they pass ``policy check``, ``policy test`` and
``policy verify``, and then the copy's fast tier passes too: what is derived from the policy
(the client's and the OpenAPI document's reason codes, the spec) is generated from it or open
to new codes, and the tools' tests use a fixture policy of their own, not the shipped one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT
from tests.support.policy import replace

pytestmark = pytest.mark.full  # the copy's whole fast tier in a child process: a minute or two

SUSPENDED_LINES = ("\n# -- a suspended account cannot share or apply (the caller says so) --------------------\n"
                   "p, *, share, r.f.account_suspended, deny, account_suspended,\n"
                   "p, *, apply, r.f.account_suspended, deny, account_suspended,\n")
AUTHOR_CASES = """\
cases:
  - {name: a lookalike is never shared across Business Centers, relation: owner, action: share,
     facts: {audience_type: lookalike, audience_source: "", seed_source: customer_file, seed_status: active,
             owner_bc_allowlisted: true, target_specified: true, target_known: true, target_in_bc: true, same_bc: false},
     decision: deny, reason: not_same_business_center}
  - {name: a suspended account cannot share, relation: owner, action: share,
     facts: {account_suspended: true, target_specified: true, target_known: true, target_in_bc: true, same_bc: true},
     decision: deny, reason: account_suspended}
  - {name: a suspended recipient cannot apply, relation: recipient, action: apply,
     facts: {account_suspended: true, ad_group_known: true, ad_group_owned: true},
     decision: deny, reason: account_suspended}
"""


def author_edits(policy: Path) -> None:
    """The three edits, in the policy files and the policy's own tests only."""
    csv = policy / "policy.csv"
    deleted = 'p, *, *, r.f.audience_status == "deleted", deny, audience_deleted,\n'
    replace(csv, deleted, deleted + SUSPENDED_LINES)
    scope = "p, owner, share, not r.f.same_bc and not r.f.owner_bc_allowlisted, deny, not_same_business_center,\n"
    replace(csv, scope, 'p, owner, share, r.f.audience_type == "lookalike" and not r.f.same_bc, deny,'
                        " not_same_business_center,\n" + scope)
    in_bc = "p, owner, share, not r.f.principal_in_bc, deny, account_not_in_business_center,\n"
    replace(csv, in_bc, 'p, owner, share, r.f.audience_type == "lookalike" and r.f.seed_status != "active", deny,'
                        " lookalike_seed_inactive,\n" + in_bc)
    replace(policy / "reasons.yaml", "  no_matching_rule:",
            "  lookalike_seed_inactive: A lookalike whose seed audience is no longer active cannot be shared.\n"
            "  account_suspended: A suspended account cannot share or apply audiences.\n  no_matching_rule:")
    with (policy / "facts.yaml").open("a") as facts:
        facts.write("account_suspended: {type: bool, source: context, default: false,"
                    " doc: the caller says the acting account is suspended}\n")
    # the case of a lookalike whose seed is deleted now expects the new code
    replace(policy / "tests" / "sharing.yaml",
            "    facts: {audience_type: lookalike, audience_source: \"\", seed_status: deleted, seed_source: partner}\n"
            "    decision: allow\n    reason: owner_may_share\n",
            "    facts: {audience_type: lookalike, audience_source: \"\", seed_status: deleted, seed_source: partner}\n"
            "    decision: deny\n    reason: lookalike_seed_inactive\n")
    (policy / "tests" / "author_edits.yaml").write_text(AUTHOR_CASES)


def _copy_repository(dest: Path) -> None:
    """The files git knows of (tracked, and new ones not ignored): no venv, caches or stores."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True, timeout=60).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)


def test_an_authors_edits_of_the_policy_keep_the_fast_tier_green(tmp_path):
    if not (ROOT / ".git").exists():
        pytest.skip("needs the repository's git metadata to copy it")
    copy = tmp_path / "repo"
    _copy_repository(copy)
    author_edits(copy / "policy")
    # the copy's packages, found before the project venv's editable install of this checkout
    # (a finder appended to sys.meta_path, so PYTHONPATH wins); the package's shipped policy is
    # then the copy's policy/ (config.shipped_policy_dir resolves the link)
    paths = tmp_path / "paths"
    paths.mkdir()
    (paths / "audience_authz").symlink_to(copy / "service", target_is_directory=True)
    (paths / "audience_authz_client").symlink_to(copy / "client" / "src" / "audience_authz_client",
                                                 target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIENCE_AUTHZ_") and k != "PYTEST_ADDOPTS"}
    env["PYTHONPATH"] = str(paths)

    def run(*args: str, timeout: float) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *args], cwd=copy, env=env, capture_output=True, text=True,
                              timeout=timeout)

    where = run("-c", "import audience_authz, audience_authz_client;"
                      " print(audience_authz.__file__); print(audience_authz_client.__file__)", timeout=60)
    assert where.stdout.split() == [str(paths / "audience_authz" / "__init__.py"),
                                    str(paths / "audience_authz_client" / "__init__.py")], where.stderr
    for tool in ("check", "test", "verify"):
        result = run("-m", "audience_authz", "policy", tool, timeout=600)
        assert result.returncode == 0, f"policy {tool}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
    tier = run("-m", "pytest", "-m", "not full", "-q", "-p", "no:cacheprovider", "-x", timeout=1500)
    assert tier.returncode == 0, tier.stdout[-6000:] + tier.stderr[-3000:]
    assert "author_edits.yaml" in run("-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                                      "policy", timeout=300).stdout

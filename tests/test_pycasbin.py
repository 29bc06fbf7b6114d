"""pycasbin: the tested releases are the pinned ones, and a release that changed the private
hook the engine relies on stops every command at start-up with a clear message, before any
decision (each change is made in a child process, on the real pycasbin, by a patch)."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import pytest
import tomllib
from packaging.requirements import Requirement

from audience_authz.engine.policy import TESTED_PYCASBIN
from tests.support import ROOT, free_port
from tests.support.policy import cli, copy_policy, replace

# Each patch makes the installed pycasbin behave as a release that changed one thing.
CHANGES = {
    "the matcher hook is gone": "del CoreEnforcer._get_expression",
    "the matcher hook rewrites differently": (  # && as `or`: every decision would be wrong
        "CoreEnforcer._get_expression = staticmethod(lambda expr, functions=None: casbin.util.SimpleEval("
        "re.sub(r'!(?!=)', 'not ', expr.replace('&&', 'or').replace('||', 'or')), functions))"),
    "enforce_ex no longer calls the hook": """
stock_enforce_ex = CoreEnforcer.enforce_ex
def enforce_ex(self, *rvals):  # parses matchers its own way: a subclass's hook is bypassed
    own = type(self).__dict__.get("_get_expression")
    if own is not None:
        type(self)._get_expression = CoreEnforcer.__dict__["_get_expression"]
    try:
        return stock_enforce_ex(self, *rvals)
    finally:
        if own is not None:
            type(self)._get_expression = own
CoreEnforcer.enforce_ex = enforce_ex
""",
    "the enforcer took a name the engine uses": "CoreEnforcer._conditions = None",
    "the policy-line reader splits at every comma": (
        "casbin.persist.load_policy_line = lambda line, model: "
        "model['p']['p'].policy.append([t.strip() for t in line.split(',')][1:])"),
}
WHAT_IT_SAYS = {
    "the matcher hook is gone": "casbin.Enforcer._get_expression, the matcher hook, is gone",
    "the matcher hook rewrites differently": "Enforcer._get_expression rewrites 'a && !b || c != d' as",
    "enforce_ex no longer calls the hook": "enforce_ex no longer parses matchers through Enforcer._get_expression",
    "the enforcer took a name the engine uses": "casbin.Enforcer now has attributes of its own named ['_conditions']",
    "the policy-line reader splits at every comma": "load_policy_line no longer splits a policy line at its top-level",
}


def run_patched(change: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """``audience-authz ARGS`` in a child process whose pycasbin carries ``change``."""
    script = "\n".join([
        "import re, sys, casbin, casbin.util, casbin.persist",
        "from casbin.core_enforcer import CoreEnforcer",
        CHANGES[change],
        "from audience_authz.cli import main",
        "sys.argv = ['audience-authz', *sys.argv[1:]]",
        "main()",
    ])
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={"AUDIENCE_AUTHZ_TOKENS": "t", "PATH": "/usr/bin:/bin"})


def test_pyproject_pins_the_tested_range_and_it_is_installed():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = [Requirement(r) for r in project["dependencies"] if Requirement(r).name == "pycasbin"]
    assert [str(p.specifier) for p in pins] == [str(Requirement("pycasbin" + TESTED_PYCASBIN).specifier)]
    assert importlib.metadata.version("pycasbin") in pins[0].specifier


@pytest.mark.full  # a patched child process per change: the full tier
@pytest.mark.parametrize("change", CHANGES)
def test_a_changed_pycasbin_stops_policy_check_with_the_reason(change):
    done = run_patched(change, "policy", "check")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith(f"Error: pycasbin {importlib.metadata.version('pycasbin')} "
                                  "is not a release audience-authz works with"), done.stderr
    assert WHAT_IT_SAYS[change] in done.stderr
    assert f"pip install 'pycasbin{TESTED_PYCASBIN}'" in done.stderr
    assert "policy OK" not in done.stdout


@pytest.mark.full  # a patched child process per command: the full tier
@pytest.mark.parametrize("command", [["policy", "test"], ["demo", "--database", "sqlite:///{tmp}/demo.db"]])
def test_a_changed_pycasbin_stops_the_other_commands(tmp_path, command):
    done = run_patched("enforce_ex no longer calls the hook", *[c.format(tmp=tmp_path) for c in command])
    assert done.returncode == 1, done.stdout + done.stderr
    assert WHAT_IT_SAYS["enforce_ex no longer calls the hook"] in done.stderr
    assert "Traceback" not in done.stderr and "passed" not in done.stdout and "loaded" not in done.stdout


@pytest.mark.full  # a subprocess of serve
def test_a_changed_pycasbin_stops_serve_before_it_listens(tmp_path):
    port = free_port()
    done = run_patched("the matcher hook is gone", "serve", "--port", str(port),
                       "--database", f"sqlite:///{tmp_path}/serve.db")
    assert done.returncode == 1, done.stdout + done.stderr
    assert WHAT_IT_SAYS["the matcher hook is gone"] in done.stderr
    assert "serving on" not in done.stderr
    assert not (tmp_path / "serve.db").exists()  # stopped before it touched the database


def test_unbalanced_brackets_in_a_policy_line_are_a_problem_with_its_line(tmp_path):
    """Casbin's line reader fails on a stray closing bracket; policy check names the line."""
    policy = copy_policy(tmp_path / "policy")
    replace(policy / "policy.csv", "p, owner, view, True, allow", "p, owner, view, True), allow")
    number = next(n for n, line in enumerate((policy / "policy.csv").read_text().splitlines(), start=1)
                  if "True), allow" in line)
    result = cli("policy", "check", policy)
    assert result.exit_code == 1
    column = (policy / "policy.csv").read_text().splitlines()[number - 1].index(")") + 1
    assert result.stdout.splitlines() == [f"policy.csv:{number}:{column}: unbalanced brackets or parentheses"]

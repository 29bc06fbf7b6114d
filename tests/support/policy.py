"""Helpers of the policy authoring tests: a copy of a fixture policy to break or change, the CLI.

The tools' tests work on ``tests/fixtures/policy`` (``FIXTURE_POLICY``), a policy of their
own, and never on the text of the shipped ``policy/``: an author's edit of the shipped
policy is tested by the policy's own tests (``policy/tests/*.yaml``), not by these."""

from __future__ import annotations

import shutil
from pathlib import Path

from click.testing import CliRunner

from audience_authz.cli import main
from tests.support import FIXTURE_POLICY


def copy_policy(dest: Path) -> Path:
    """A copy of the fixture policy directory (with its tests) that a test may edit."""
    shutil.copytree(FIXTURE_POLICY, dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def replace(path: Path, old: str, new: str) -> None:
    """Replace one exact occurrence of ``old`` in ``path``."""
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in {path}"
    path.write_text(text.replace(old, new))


def line_of(path: Path, text: str) -> int:
    """The number of the only line of ``path`` that contains ``text``."""
    found = [n for n, line in enumerate(path.read_text().splitlines(), start=1) if text in line]
    assert len(found) == 1, f"{text!r} is on lines {found} of {path}"
    return found[0]


def cli(*args: str):
    """Run ``audience-authz ARGS`` in this process; the click Result (exit_code, stdout, output)."""
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


RECIPIENT_REFRESH_DENY = "p, recipient, refresh_lookalike, True, deny, recipient_action_forbidden,"
RECIPIENT_REFRESH_ALLOW = "p, recipient, refresh_lookalike, True, allow, recipient_may_refresh_lookalike, propagate_update"


def let_recipients_refresh_lookalikes(policy: Path, with_tests: bool = True, with_properties: bool = True) -> None:
    """The worked example of a policy change: recipients may refresh a shared lookalike
    (and, unless ``with_tests`` is false, the policy's own test of that cell says so; unless
    ``with_properties`` is false, its properties.yaml no longer promises the opposite)."""
    replace(policy / "policy.csv", RECIPIENT_REFRESH_DENY, RECIPIENT_REFRESH_ALLOW)
    if with_properties:
        properties = policy / "properties.yaml"
        replace(properties, "actions: [share, edit, stop_sharing, create_lookalike, refresh_lookalike, view_shares]",
                "actions: [share, edit, stop_sharing, create_lookalike, view_shares]")
        replace(properties, "    actions: [create_lookalike, refresh_lookalike]\n",
                "    relations: [owner]\n    actions: [create_lookalike, refresh_lookalike]\n")
    if with_tests:
        matrix = policy / "tests" / "matrix.yaml"
        text = matrix.read_text()
        old = ("  - name: recipient cannot refresh a lookalike\n    relation: recipient\n    action: refresh_lookalike\n"
               "    facts: {audience_type: lookalike, audience_source: \"\", seed_status: active}\n"
               "    decision: deny\n    reason: recipient_action_forbidden\n")
        new = ("  - name: recipient refreshes a lookalike\n    relation: recipient\n    action: refresh_lookalike\n"
               "    facts: {audience_type: lookalike, audience_source: \"\", seed_status: active}\n"
               "    decision: allow\n    reason: recipient_may_refresh_lookalike\n    effects: [propagate_update]\n")
        assert text.count(old) == 1
        matrix.write_text(text.replace(old, new))

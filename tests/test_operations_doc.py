"""The production recipe of docs/operations.md: what an operator copies must install and
run the service alone, without the test suite's or the benchmark's extras."""

from __future__ import annotations

import re
import shlex

from tests.support import ROOT

OPERATIONS = ROOT / "docs" / "operations.md"


def _recipe() -> list[list[str]]:
    """The commands of the first shell block under "Running in production"."""
    section = OPERATIONS.read_text().split("## Running in production", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    return [shlex.split(line, comments=True) for line in block.splitlines() if shlex.split(line, comments=True)]


def test_the_production_recipe_installs_no_test_extras():
    installs = [words for words in _recipe() if words[:2] == ["pip", "install"]]
    assert installs, "the recipe says how to install"
    for words in installs:
        assert "-e" not in words and "--editable" not in words, words  # a built package, not a checkout
        for target in words[2:]:
            extras = set(re.findall(r"\[([^\]]*)\]", target)[0].split(",")) if "[" in target else set()
            assert extras <= {"postgresql", "client"}, f"the recipe installs {sorted(extras)}: {words}"


def test_the_production_recipe_serves_under_gunicorn():
    serves = [words for words in _recipe() if words[:2] == ["audience-authz", "serve"]]
    assert serves and all("--dev" not in words for words in serves)

"""pytest collects the policy unit tests (``tests/*.yaml`` beside this file): one item per
case, run against the rule files of this directory alone (see service/policytest.py)."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from service.policy import Policy
from service.policytest import read_cases, run_case

HERE = Path(__file__).resolve().parent
TESTS = HERE / "tests"


@functools.cache
def _policy() -> Policy:
    return Policy.load(HERE)


def pytest_collect_file(parent, file_path: Path):
    if file_path.suffix in (".yaml", ".yml") and TESTS in file_path.resolve().parents:
        return PolicyTestFile.from_parent(parent, path=file_path)
    return None


class PolicyTestFile(pytest.File):
    def collect(self):
        for case in read_cases(self.path, str(self.path.relative_to(TESTS))):
            yield PolicyCase.from_parent(self, name=case.name, case=case)


class PolicyCaseFailed(Exception):
    pass


class PolicyCase(pytest.Item):
    def __init__(self, *, case, **kwargs):
        super().__init__(**kwargs)
        self.case = case

    def runtest(self):
        result = run_case(_policy(), self.case)
        if result.status != "pass":
            raise PolicyCaseFailed(result)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, PolicyCaseFailed):
            result = excinfo.value.args[0]
            kind = "ERROR in the test case" if result.status == "error" else "FAILED"
            return "\n".join([f"{result.case.where}: {kind}: {self.case.name}",
                              *(f"  {m}" for m in result.messages)])
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, max(self.case.line - 1, 0), f"policy case {self.case.name!r}"

"""A pytest plugin: the policy unit tests of a policy directory (``<dir>/tests/*.yaml``
beside ``<dir>/policy.csv``) become one pytest item per case, each run against the rule
files of that directory alone (see ``cases.py``); and each property of its
``properties.yaml`` is an item proven by ``policy verify`` (``verify.py``). Installed as a pytest plugin (entry point
``pytest11``), so ``pytest policy/`` works wherever the package is."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from audience_authz.engine.policy import Policy
from audience_authz.policytools.cases import read_cases, run_case


@functools.cache
def _policy(directory: Path) -> Policy:
    return Policy.load(directory)


def _tests_dir(file_path: Path) -> Path | None:
    """The ``tests`` folder of a policy directory that holds ``file_path``, if any."""
    for folder in file_path.resolve().parents:
        if folder.name == "tests" and (folder.parent / "policy.csv").is_file():
            return folder
    return None


def pytest_collect_file(parent, file_path: Path):
    if file_path.suffix in (".yaml", ".yml") and _tests_dir(file_path) is not None:
        return PolicyTestFile.from_parent(parent, path=file_path)
    if file_path.name == "properties.yaml" and (file_path.parent / "policy.csv").is_file():
        return PropertiesFile.from_parent(parent, path=file_path)
    return None


class PropertiesFile(pytest.File):
    def collect(self):
        from audience_authz.policytools import verify

        yield ContractItem.from_parent(self, name="contract")
        properties, problems = verify.load(self.path)
        for file, line, message in problems:
            yield PropertyItem.from_parent(self, name=f"{file}:{line}", prop=None, problem=message)
        for prop in properties:
            yield PropertyItem.from_parent(self, name=prop.name, prop=prop, problem=None)


class ContractItem(pytest.Item):
    """The directory keeps the contract with the code (``contract.py``; ``policy check``)."""

    def runtest(self):
        from audience_authz.policytools.check import contract_problems

        problems = contract_problems(self.path.parent)
        if problems:
            raise PolicyCaseFailed("\n".join(f"{f}:{n}: {m}" for f, n, m in problems))

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, PolicyCaseFailed):
            return str(excinfo.value.args[0])
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path.parent / "facts.yaml", 0, "the contract between the code and the policy"


class PropertyItem(pytest.Item):
    def __init__(self, *, prop, problem, **kwargs):
        super().__init__(**kwargs)
        self.prop, self.problem = prop, problem

    def runtest(self):
        from audience_authz.policytools import verify

        if self.problem is not None:
            raise PolicyCaseFailed(self.problem)
        result = verify.verify(_policy(self.path.parent), [self.prop])[0]
        if result.status != "proven":
            raise PolicyCaseFailed(f"{self.prop.where}: {result.status.upper()}: {self.prop.name}: {self.prop.message}\n  "
                                   + (verify.describe(result.counterexample) if result.counterexample else result.error))

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, PolicyCaseFailed):
            return str(excinfo.value.args[0])
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, max((self.prop.line if self.prop else 1) - 1, 0), f"policy property {self.name!r}"


class PolicyTestFile(pytest.File):
    def collect(self):
        for case in read_cases(self.path, str(self.path.relative_to(_tests_dir(self.path)))):
            yield PolicyCase.from_parent(self, name=case.name, case=case)


class PolicyCaseFailed(Exception):
    pass


class PolicyCase(pytest.Item):
    def __init__(self, *, case, **kwargs):
        super().__init__(**kwargs)
        self.case = case

    def runtest(self):
        result = run_case(_policy(_tests_dir(self.path).parent), self.case)
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

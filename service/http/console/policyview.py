"""The policy as the console shows it: policy.csv in file order, grouped by its section
comments, each line with its message, effects and the policy test cases it decides.

Nothing here decides: the cases run through ``policytools.cases`` (each result names the
line that decided it) and the matrix is ``policytools.matrix``. Both depend only on the
policy's files, so they are worked out once per policy version and kept.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from audience_authz.engine.policy import Decision, Policy, Rule
from audience_authz.policytools import cases as policycases
from audience_authz.policytools import matrix as policymatrix

TESTS_DIR = "tests"


@dataclass
class Line:
    rule: Rule
    message: str  # the deny code's message ("" for an allow line: its reason is a rule id)
    cases: list[policycases.Result] = field(default_factory=list)  # cases this line decides

    @property
    def tested(self) -> bool:
        return any(r.status == "pass" for r in self.cases)

    @property
    def effects(self) -> list[str]:
        return [f"{n}:{a}" if a else n for n, a in self.rule.effects]


@dataclass
class Section:
    title: str
    lines: list[Line] = field(default_factory=list)


@dataclass
class View:
    policy: Policy
    intro: list[str]  # the comments above the first section
    sections: list[Section]
    report: policycases.Report | None  # the policy's own tests/, None when it has none
    tables: list[policymatrix.Table]

    @property
    def lines(self) -> dict[int, Line]:
        return {line.rule.line: line for section in self.sections for line in section.lines}

    @property
    def untested(self) -> int:
        return sum(not line.tested for section in self.sections for line in section.lines)


def build(policy: Policy, tests: Path | None = None, coverage: bool = False) -> View:
    """The view of ``policy``, its cases read from ``tests`` (default: its own tests/)."""
    tests = tests if tests is not None else policy.directory / TESTS_DIR
    report = policycases.run_suite(policy, tests, coverage=coverage) if tests.is_dir() else None
    by_line: dict[int, list[policycases.Result]] = {}
    for result in report.results if report else ():
        if result.decision is not None and result.decision.rule is not None:
            by_line.setdefault(result.decision.rule.line, []).append(result)
    rules = {rule.line: rule for rule in policy.rules}
    intro, sections, heading = [], [], False
    for number, text in enumerate((policy.directory / "policy.csv").read_text().splitlines(), start=1):
        stripped = text.strip()
        if stripped.startswith("# --"):
            title = stripped[4:].strip(" -")
            if heading and sections:  # a heading continued on the next comment line
                sections[-1].title = f"{sections[-1].title} {title}".strip()
            else:
                sections.append(Section(title))
            heading = True
            continue
        heading = False
        if stripped.startswith("#"):
            if not sections:
                intro.append(stripped.lstrip("# "))
            continue
        rule = rules.get(number)
        if rule is None:
            continue
        if not sections:
            sections.append(Section(""))
        message = policy.message(rule.reason) if rule.eft == "deny" else ""
        sections[-1].lines.append(Line(rule, message, by_line.get(number, [])))
    return View(policy, intro, sections, report, policymatrix.tables(policy))


_views: dict[str, View] = {}
_lock = threading.Lock()


def of(policy: Policy) -> View:
    """The view of the policy serving now, kept per version (a reload makes a new one)."""
    view = _views.get(policy.version)
    if view is None:
        view = build(policy)
        with _lock:
            if len(_views) > 4:
                _views.clear()
            _views[policy.version] = view
    return view


def cell(value) -> dict:
    """A matrix cell for the template: text, or a decision with the line that decides it."""
    if not isinstance(value, Decision):
        return {"text": str(value)}
    return {"decision": value.decision, "reason": value.reason,
            "effects": [f"{n}:{a}" if a else n for n, a in value.effects],
            "line": value.rule.line if value.rule else None}

"""Policy unit tests as data: YAML cases under ``policy/tests/``, run on the rule files alone.

A test file holds ``cases`` (and optionally ``description`` and ``defaults``, which every
case of the file starts from). A case names the request and what the policy must answer::

    - name: a recipient cannot re-share
      relation: recipient          # owner, recipient, none (audiences) or self, other, new
      action: share
      facts: {target_known: true}  # any fact of facts.yaml; the others take its defaults
      decision: deny
      reason: reshare_forbidden    # a deny code of reasons.yaml, or an allow line's rule id
      effects: []                  # an allow line's effects, e.g. [end_share, "disconnect_audience:broaden"]

Anything the policy does not know (a fact, relation, action, reason code, effect, or a
misspelt key) is an *error*, never a silent pass. ``allow_unknown: true`` lets a case name a
relation or action the service never asks about, to test the default deny.

Used by ``audience-authz policy test`` and by pytest (``policy/conftest.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from audience_authz.engine.expressions import Compiled
from audience_authz.engine.policy import (
    ACCOUNT_ACTIONS,
    ACTIONS,
    AUDIENCE_ACTIONS,
    AUDIENCE_RELATIONS,
    FAULT_REASONS,
    RELATIONS,
    Decision,
    Policy,
)
from audience_authz.policytools.check import yaml_error
from audience_authz.policytools.messages import did_you_mean, yaml_value_hint
from audience_authz.vocabulary import DISCONNECT_OUTCOMES, EFFECTS, FACT_TYPES

FILE_KEYS = {"description", "defaults", "cases"}
DEFAULT_KEYS = {"relation", "action", "facts"}
CASE_KEYS = {"name", "doc", "relation", "action", "facts", "decision", "reason", "effects", "allow_unknown"}
REQUIRED_KEYS = ("name", "relation", "action", "decision", "reason")
# Reason codes the service gives by itself, never through a rule or a missing one.


@dataclass
class Case:
    file: str
    line: int
    name: str
    relation: str = ""
    action: str = ""
    facts: dict = field(default_factory=dict)
    decision: str = ""
    reason: str = ""
    effects: list = field(default_factory=list)
    allow_unknown: bool = False
    problems: list[str] = field(default_factory=list)  # why the case cannot run
    column: int = 1

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass
class Result:
    case: Case
    status: str  # "pass", "fail" or "error"
    messages: list[str] = field(default_factory=list)
    decision: Decision | None = None


@dataclass
class Report:
    results: list[Result]
    gaps: list[str]  # what the suite leaves untested (empty when coverage is not asked)

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def ok(self) -> bool:
        return bool(self.results) and all(r.status == "pass" for r in self.results) and not self.gaps


# -- reading ---------------------------------------------------------------------------------

class _Mapping(dict):
    """A YAML mapping that remembers the line it starts on."""

    line = 0
    column = 1


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """libyaml's safe loader where PyYAML has it: the suite is read at every reload and by
    the console, and the pure-Python parser took a third of a second for it."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> _Mapping:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} is given twice", key_node.start_mark)
        seen.add(key)
    mapping = _Mapping(loader.construct_mapping(node, deep=True))
    mapping.line = node.start_mark.line + 1
    mapping.column = node.start_mark.column + 1
    return mapping


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def find_test_files(path: str | Path) -> list[Path]:
    """The YAML test files at ``path`` (a file, or a directory searched recursively)."""
    path = Path(path)
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*.y*ml") if p.suffix in (".yaml", ".yml"))


def read_cases(path: Path, label: str | None = None) -> list[Case]:
    """The cases of one file; a file that cannot be read gives one case carrying the problem."""
    label = label or path.name
    try:
        data = yaml.load(path.read_text(), Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        return [Case(label, line, "<file>", problems=[f"not valid YAML: {yaml_error(exc)}"],
                     column=mark.column + 1 if mark else 1)]
    if not isinstance(data, dict) or not isinstance(data.get("cases"), list):
        return [Case(label, 1, "<file>", problems=["a test file is a mapping with a list of 'cases'"])]
    problems = [f"unknown key {k!r} (known: {', '.join(sorted(FILE_KEYS))})" for k in data if k not in FILE_KEYS]
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        problems.append("'defaults' must be a mapping")
        defaults = {}
    problems += [f"defaults: unknown key {k!r} (known: {', '.join(sorted(DEFAULT_KEYS))})"
                 for k in defaults if k not in DEFAULT_KEYS]
    if problems:
        return [Case(label, getattr(data, "line", 1), "<file>", problems=problems)]
    cases, names = [], set()
    for index, raw in enumerate(data["cases"], start=1):
        case = _case(label, index, raw, defaults)
        if case.name in names:
            case.problems.append(f"another case of this file is named {case.name!r}")
        names.add(case.name)
        cases.append(case)
    return cases


def _case(label: str, index: int, raw, defaults: dict) -> Case:
    if not isinstance(raw, dict):
        return Case(label, 1, f"<case {index}>", problems=["a case is a mapping"])
    line = getattr(raw, "line", 1)
    case = Case(label, line, str(raw.get("name") or f"<case {index}>"), column=getattr(raw, "column", 1))
    case.problems += [f"unknown key {k!r}{did_you_mean(str(k), sorted(CASE_KEYS))} (known: {', '.join(sorted(CASE_KEYS))})"
                      for k in raw if k not in CASE_KEYS]
    merged = {**{k: v for k, v in defaults.items() if k != "facts"}, **raw}
    case.problems += [f"missing {k!r}" for k in REQUIRED_KEYS if k not in merged]
    facts = {**(defaults.get("facts") or {}), **(raw.get("facts") or {})}
    if not isinstance(raw.get("facts", {}), dict) or not isinstance(defaults.get("facts", {}), dict):
        case.problems.append("'facts' must be a mapping of fact names to values")
        facts = {}
    effects = merged.get("effects", [])
    if not isinstance(effects, list) or not all(isinstance(e, str) for e in effects):
        case.problems.append("'effects' must be a list of effect names")
        effects = []
    for key in ("relation", "action", "decision", "reason"):
        if key in merged and not isinstance(merged[key], str):
            case.problems.append(f"{key!r} must be a string")
    case.relation, case.action = str(merged.get("relation", "")), str(merged.get("action", ""))
    case.decision, case.reason = str(merged.get("decision", "")), str(merged.get("reason", ""))
    case.facts, case.effects = facts, effects
    case.allow_unknown = merged.get("allow_unknown", False) is True
    return case


# -- checking a case against the policy's vocabulary -----------------------------------------

def _vocabulary_problems(policy: Policy, case: Case) -> list[str]:
    found = []
    if not case.allow_unknown:
        if case.relation not in RELATIONS:
            found.append(f"unknown relation {case.relation!r}{did_you_mean(case.relation, RELATIONS)}"
                         f" (known: {', '.join(RELATIONS)};"
                         " set allow_unknown: true to test a request the service never makes)")
        if case.action not in ACTIONS:
            found.append(f"unknown action {case.action!r}{did_you_mean(case.action, ACTIONS)}"
                         f" (known: {', '.join(ACTIONS)};"
                         " set allow_unknown: true to test a request the service never makes)")
    for name, value in case.facts.items():
        spec = policy.facts_schema.get(name)
        if spec is None:
            found.append(f"unknown fact {name!r}: facts.yaml does not declare it"
                         + did_you_mean(str(name), list(policy.facts_schema)))
            continue
        kind = FACT_TYPES.get(spec.get("type", "str"), str)
        if type(value) is not kind:  # noqa: E721 - exact: true is not an int, 1 is not a bool
            found.append(f"fact {name!r} is {'an' if kind is int else 'a'} {kind.__name__} in facts.yaml,"
                         f" not {value!r}{yaml_value_hint(kind, value)}")
    missing = [name for name in policy.required_context if name not in case.facts]
    if missing:
        found.append(f"fact {missing[0]!r} is required from the caller (facts.yaml: required: true);"
                     " give it in this case's facts or the file's defaults")
    if case.decision not in ("allow", "deny"):
        found.append(f"decision must be allow or deny, not {case.decision!r}")
    elif case.decision == "deny" and case.reason not in policy.reasons:
        found.append(f"reason {case.reason!r} is not a deny code of reasons.yaml"
                     + did_you_mean(case.reason, list(policy.reasons)))
    elif case.decision == "allow" and case.reason not in {r.reason for r in policy.rules if r.eft == "allow"}:
        allows = sorted({r.reason for r in policy.rules if r.eft == "allow"})
        found.append(f"no allow line of policy.csv gives reason {case.reason!r}" + did_you_mean(case.reason, allows))
    if case.decision == "deny" and case.effects:
        found.append("a deny carries no effects")
    for effect in case.effects:
        name, _, arg = effect.partition(":")
        if name not in EFFECTS:
            found.append(f"unknown effect {name!r}{did_you_mean(name, sorted(EFFECTS))}"
                         f" (known: {', '.join(sorted(EFFECTS))})")
        elif name == "disconnect_audience" and arg not in DISCONNECT_OUTCOMES:
            found.append(f"{effect!r}: disconnect_audience takes :broaden or :pause")
        elif name != "disconnect_audience" and arg:
            found.append(f"{effect!r}: {name} takes no argument")
    return found


# -- running ---------------------------------------------------------------------------------

def effect_names(decision: Decision) -> list[str]:
    return [f"{name}:{arg}" if arg else name for name, arg in decision.effects]


def run_case(policy: Policy, case: Case) -> Result:
    problems = case.problems + _vocabulary_problems(policy, case)
    if problems:
        return Result(case, "error", problems)
    try:
        facts = policy.facts(**case.facts)
        broken = [] if case.allow_unknown else _broken_invariants(policy, facts)
        if broken:
            return Result(case, "error", [f"the service never makes this request: the invariant of fact {name!r}"
                                          f" in facts.yaml, {text!r}, does not hold (set allow_unknown: true to"
                                          " test it anyway)" for name, text in broken])
        decision = policy.decide(case.relation, case.action, facts)
    except Exception as exc:  # noqa: BLE001 - a condition that fails to evaluate is the policy's bug
        return Result(case, "error", [f"the policy failed on this request: {type(exc).__name__}: {exc}"])
    messages = []
    by = f"policy.csv:{decision.rule.line}:1" if decision.rule else "no rule (default deny)"
    if (decision.decision, decision.reason) != (case.decision, case.reason):
        messages.append(f"expected {case.decision} ({case.reason}), got {decision.decision}"
                        f" ({decision.reason}) from {by}")
    got_effects = effect_names(decision)
    if sorted(got_effects) != sorted(case.effects):
        messages.append(f"expected effects {case.effects}, got {got_effects} from {by}")
    return Result(case, "fail" if messages else "pass", messages, decision)


_INVARIANTS: dict[str, Compiled] = {}


class _Request:
    __slots__ = ("f",)

    def __init__(self, facts):
        self.f = facts


def _broken_invariants(policy: Policy, facts) -> list[tuple[str, str]]:
    """(fact, invariant) of facts.yaml that ``facts`` break: a request the service never makes."""
    broken = []
    for name, spec in policy.facts_schema.items():
        declared = spec.get("invariant") or []
        for text in [declared] if isinstance(declared, str) else declared:
            compiled = _INVARIANTS.get(text) or _INVARIANTS.setdefault(text, Compiled(text))
            if not compiled.eval({"r": _Request(facts)}):
                broken.append((name, text))
    return broken


def run_suite(policy: Policy, path: str | Path, coverage: bool = True) -> Report:
    path = Path(path)
    base = path if path.is_dir() else path.parent
    cases = [case for file in find_test_files(path) for case in read_cases(file, str(file.relative_to(base)))]
    results = [run_case(policy, case) for case in cases]
    return Report(results, coverage_gaps(policy, results) if coverage else [])


def coverage_gaps(policy: Policy, results: list[Result]) -> list[str]:
    """What the passing cases leave untested: policy lines that decide no case, deny codes no
    case gets, cells of the owner/recipient/none matrix and account actions no case asks."""
    passed = [r for r in results if r.status == "pass"]
    lines = {r.decision.rule.line for r in passed if r.decision.rule is not None}
    gaps = [f"policy.csv:{rule.line}:1: no passing case is decided by this line"
            f" (p, {', '.join(rule.values[:5])})" for rule in policy.rules if rule.line not in lines]
    reasons = {r.decision.reason for r in passed}
    gaps += [f"reasons.yaml: no passing case is denied with {code!r}"
             for code in policy.reasons if code not in reasons and code not in FAULT_REASONS]
    cells = {(r.case.relation, r.case.action) for r in passed}
    gaps += [f"matrix: no passing case asks ({rel}, {act})"
             for act in AUDIENCE_ACTIONS for rel in AUDIENCE_RELATIONS if (rel, act) not in cells]
    actions = {r.case.action for r in passed}
    gaps += [f"account actions: no passing case asks {act!r}" for act in ACCOUNT_ACTIONS if act not in actions]
    return gaps

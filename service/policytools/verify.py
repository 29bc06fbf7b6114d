"""``policy verify``: the properties of ``properties.yaml`` proven over every request.

A property says what every decision of some (relation, action) pairs must satisfy::

    - name: recipient_never_reshares
      message: A recipient can never share an audience shared with it.
      relations: [recipient]            # default: every relation the service asks with
      actions: [share]                  # default: every action
      when: r.f.target_known            # optional: only requests where this holds
      then: d.decision == "deny"        # must hold of every such decision

``when`` and ``then`` are expressions in the policy's language. ``then`` may also read the
decision: ``d.decision`` (allow or deny), ``d.reason``, ``d.effects`` (the effects, each
both as ``name`` and as ``name:argument``), ``d.line`` (the deciding line, 0 for none), the
request's ``r.rel`` and ``r.act``, and ``reasons`` (the deny codes of reasons.yaml).

A property is *proven* by z3 (``symbolic.py``) for every value of every fact: for each pair
it asks, of each first-match region of the decision list, whether some facts in it (that
meet the invariants of facts.yaml and ``when``) break ``then``. None: proven. Some: the
solver's facts are a counterexample, which is decided again by the real engine to confirm
the deciding line before it is reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml
import z3

from audience_authz.engine.expressions import Compiled, ExpressionError, names_in
from audience_authz.engine.policy import Policy
from audience_authz.policytools.symbolic import Encoder, Outcome, Unsupported, asked_pairs
from audience_authz.vocabulary import ACTIONS, RELATIONS

PROPERTIES_FILE = "properties.yaml"
KEYS = {"name", "message", "relations", "actions", "when", "then", "doc"}
DECISION_NAMES = {"d.decision", "d.reason", "d.effects", "d.line", "r.rel", "r.act", "reasons"}

Problem = tuple[str, int, str]


@dataclass
class Property:
    name: str
    message: str
    line: int
    then: str
    when: str = "True"
    relations: list[str] | None = None
    actions: list[str] | None = None

    @property
    def where(self) -> str:
        return f"{PROPERTIES_FILE}:{self.line}"


@dataclass
class Counterexample:
    relation: str
    action: str
    facts: dict
    outcome: Outcome
    shown: str = ""

    def as_dict(self) -> dict:
        rule = self.outcome.rule
        return {"relation": self.relation, "action": self.action, "facts": self.facts,
                "decision": self.outcome.decision, "reason": self.outcome.reason,
                "effects": list(self.outcome.effects),
                "deciding_line": None if rule is None else {
                    "file": "policy.csv", "line": rule.line, "text": line_text(rule)}}


@dataclass
class Result:
    prop: Property
    status: str  # proven, failed or error
    pairs: int = 0
    counterexample: Counterexample | None = None
    error: str = ""

    def as_dict(self) -> dict:
        body = {"name": self.prop.name, "where": self.prop.where, "status": self.status,
                "message": self.prop.message, "pairs": self.pairs}
        if self.counterexample:
            body["counterexample"] = self.counterexample.as_dict()
        if self.error:
            body["error"] = self.error
        return body


@dataclass
class Report:
    results: list[Result] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)  # properties.yaml unusable

    @property
    def ok(self) -> bool:
        return not self.problems and all(r.status == "proven" for r in self.results)

    def refusals(self) -> list[Problem]:
        """Each problem and unproven property as (file, line, message), for a reload's refusal."""
        found = list(self.problems)
        for r in self.results:
            if r.status != "proven":
                found.append((PROPERTIES_FILE, r.prop.line, f"{r.prop.name}: {r.prop.message} "
                              + (describe(r.counterexample) if r.counterexample else r.error)))
        return found


def load(path: str | Path) -> tuple[list[Property], list[Problem]]:
    """The properties of ``path``, and the problems that make any unusable."""
    path = Path(path)
    try:
        node = yaml.compose(path.read_text())
    except OSError as exc:
        return [], [(PROPERTIES_FILE, 0, f"cannot read: {exc}")]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        return [], [(PROPERTIES_FILE, mark.line + 1 if mark else 0, f"not valid YAML: {exc}")]
    top = yaml.safe_load(path.read_text()) if node is not None else None
    if not isinstance(top, dict) or not isinstance(top.get("properties"), list):
        return [], [(PROPERTIES_FILE, 1, "needs a 'properties:' list")]
    items = next(v for k, v in node.value if k.value == "properties").value
    found, problems, names = [], [], set()
    for item_node, raw in zip(items, top["properties"]):
        line = item_node.start_mark.line + 1
        if not isinstance(raw, dict):
            problems.append((PROPERTIES_FILE, line, "a property is a mapping (name, message, then, ...)"))
            continue
        wrong = [f"unknown key {k!r}" for k in raw if k not in KEYS]
        wrong += [f"{k!r} is required" for k in ("name", "message", "then") if not raw.get(k)]
        if raw.get("name") in names:
            wrong.append(f"name {raw['name']!r} is used twice")
        names.add(raw.get("name"))
        for key, known in (("relations", RELATIONS), ("actions", ACTIONS)):
            value = raw.get(key)
            if value is not None and (not isinstance(value, list) or set(value) - set(known)):
                wrong.append(f"{key} must be a list of {', '.join(known)}")
        for key in ("when", "then"):
            text = raw.get(key)
            if text is None:
                continue
            try:
                Compiled(str(text))
                allowed = DECISION_NAMES if key == "then" else {"r.rel", "r.act", "reasons"}
                bad = [n for n in names_in(str(text)) - allowed if not n.startswith("r.f.")]
                if bad:
                    wrong.append(f"{key} reads {', '.join(sorted(bad))}")
            except (ExpressionError, SyntaxError) as exc:
                wrong.append(f"bad {key}: {exc}")
        if wrong:
            problems += [(PROPERTIES_FILE, line, f"{raw.get('name', 'property')}: {w}") for w in wrong]
            continue
        prop = Property(str(raw["name"]), str(raw["message"]).strip(), line, str(raw["then"]),
                        str(raw.get("when", "True")), raw.get("relations"), raw.get("actions"))
        if not asked_pairs(prop.relations, prop.actions):
            problems.append((PROPERTIES_FILE, line, f"{prop.name}: matches no (relation, action) the service asks"))
            continue
        found.append(prop)
    return found, problems


def verify(policy: Policy, properties: list[Property]) -> list[Result]:
    encoder = Encoder(policy)
    reasons = tuple(policy.reasons)
    regions = {}
    results = []
    for prop in properties:
        pairs = asked_pairs(prop.relations, prop.actions)
        result = Result(prop, "proven", len(pairs))
        try:
            for rel, act in pairs:
                if (rel, act) not in regions:
                    regions[(rel, act)] = encoder.regions(rel, act)
                found = _refute(encoder, policy, prop, rel, act, regions[(rel, act)], reasons)
                if found is not None:
                    result.status, result.counterexample = "failed", found
                    break
            if result.status == "proven" and not _holds_somewhere(encoder, prop, pairs):
                result.status, result.error = "error", "vacuous: `when` holds for no request the service makes"
        except Unsupported as exc:
            result.status, result.error = "error", f"cannot be proven: {exc}"
        except _Mismatch as exc:
            result.status, result.error = "error", str(exc)
        results.append(result)
    return results


def _holds_somewhere(encoder: Encoder, prop: Property, pairs) -> bool:
    """Whether some request of ``pairs`` meets ``when`` (else the property says nothing)."""
    for rel, act in pairs:
        solver = z3.Solver()
        solver.add(*encoder.invariants(act), encoder.condition(prop.when, {"r.rel": rel, "r.act": act}))
        if solver.check() == z3.sat:
            return True
    return False


class _Mismatch(Exception):
    pass


def _refute(encoder: Encoder, policy: Policy, prop: Property, rel: str, act: str, regions, reasons):
    """A request of (rel, act) that breaks ``prop``, or None when there is none: one solver
    call over every region (they are disjoint) whose outcome can break ``then``."""
    broken = []
    for region in regions:
        outcome = region.outcome
        effects = set(outcome.effects) | {e.partition(":")[0] for e in outcome.effects}
        consts = {"d.decision": outcome.decision, "d.reason": outcome.reason, "d.effects": effects,
                  "d.line": outcome.rule.line if outcome.rule else 0, "r.rel": rel, "r.act": act,
                  "reasons": reasons}
        breaks = z3.simplify(z3.Not(encoder.condition(prop.then, consts)))
        if not z3.is_false(breaks):
            broken.append((region, breaks))
    if not broken:
        return None
    solver = z3.Solver()
    solver.add(*encoder.invariants(act), encoder.condition(prop.when, {"r.rel": rel, "r.act": act}))
    solver.add(z3.Or(*[z3.And(region.formula, breaks) for region, breaks in broken]))
    verdict = solver.check()
    if verdict == z3.unsat:
        return None
    if verdict != z3.sat:
        raise Unsupported(f"the solver could not decide ({rel}, {act}): {verdict}")
    model = solver.model()
    region, breaks = next((r, b) for r, b in broken if z3.is_true(model.eval(r.formula, model_completion=True)))
    facts = encoder.example(*encoder.invariants(act), encoder.condition(prop.when, {"r.rel": rel, "r.act": act}),
                            region.formula, breaks) or encoder.facts_of(model)
    outcome = region.outcome
    decided = policy.decide(rel, act, policy.facts(**facts))
    line = decided.rule.line if decided.rule else None
    if line != (outcome.rule.line if outcome.rule else None):
        raise _Mismatch(f"the solver says {outcome.where()} decides ({rel}, {act}) when {encoder.show(facts)},"
                        f" the engine says line {line}")
    return Counterexample(rel, act, facts, outcome, encoder.show(facts))


def line_text(rule) -> str:
    """A policy line as written (without a trailing empty effects column)."""
    return "p, " + ", ".join(rule.values).removesuffix(", ")


def describe(example: Counterexample) -> str:
    rule = example.outcome.rule
    line = f"policy.csv:{rule.line} ({line_text(rule)})" if rule else "no line (no_matching_rule)"
    return (f"counterexample: relation {example.relation}, action {example.action}, facts {example.shown};"
            f" decided {example.outcome.describe()} by {line}")


def run(policy: Policy, path: str | Path | None = None) -> Report:
    """Verify the properties of ``path`` (default: the policy directory's properties.yaml)."""
    path = Path(path) if path is not None else policy.directory / PROPERTIES_FILE
    properties, problems = load(path)
    return Report(verify(policy, properties), problems)

"""``policy check``: is a policy directory safe to load? Each problem with file and line."""

from __future__ import annotations

from pathlib import Path

from . import effects
from .expressions import Compiled, ExpressionError, names_in
from .policy import ACTIONS, AUDIENCE_RELATIONS, MATRIX_ACTIONS, RELATIONS, Policy, PolicyError


def check_policy(directory) -> list[tuple[str, int, str]]:
    directory = Path(directory)
    try:
        policy = Policy.load(directory)
    except PolicyError as exc:
        return exc.problems
    except Exception as exc:  # noqa: BLE001 - the model or a YAML file does not parse
        return [("model.conf", 0, f"cannot load the policy: {exc}")]
    problems = []
    for rule in policy.rules:
        problems += [("policy.csv", rule.line, m) for m in _rule_problems(policy, rule)]
    for rel in AUDIENCE_RELATIONS:
        for act in MATRIX_ACTIONS:
            if policy.decide(rel, act, policy.facts()).rule is None:
                problems.append(("policy.csv", 0, f"no rule decides ({rel}, {act}) with default facts"))
    return problems


def _rule_problems(policy: Policy, rule) -> list[str]:
    found = []
    if rule.rel != "*" and rule.rel not in RELATIONS:
        found.append(f"unknown relation {rule.rel!r} (known: {', '.join(RELATIONS)})")
    if rule.act != "*" and rule.act not in ACTIONS:
        found.append(f"unknown action {rule.act!r}")
    if rule.eft not in ("allow", "deny"):
        found.append(f"eft must be allow or deny, not {rule.eft!r}")
    if rule.eft == "deny" and rule.reason not in policy.reasons:
        found.append(f"reason {rule.reason!r} is not listed in reasons.yaml")
    if rule.eft == "deny" and rule.effects:
        found.append("a deny line carries no effects")
    for name, arg in rule.effects:
        if name not in effects.KNOWN:
            found.append(f"unknown effect {name!r} (known: {', '.join(sorted(effects.KNOWN))})")
        elif name == "disconnect_audience" and arg not in effects.DISCONNECT_OUTCOMES:
            found.append(f"disconnect_audience takes broaden or pause, not {arg!r}")
    try:
        Compiled(rule.cond)
        for name in names_in(rule.cond):
            if not name.startswith("r.f.") or name[4:] not in policy.facts_schema:
                found.append(f"condition reads {name!r}, which is not a fact in facts.yaml")
    except (ExpressionError, SyntaxError) as exc:
        found.append(f"bad condition: {exc}")
    return found

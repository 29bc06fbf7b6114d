"""``policy check``: is a policy directory safe to load? Each problem with file, line and column.

Beyond the files parsing and naming only known relations, actions, facts, reason codes and
effects, the check proves two things about the decision list by search:

* *completeness*: every cell of the owner/recipient/none matrix (and each account action
  asked by the account itself) is decided by some line for every combination of facts;
* *reachability*: every line is the first match for at least one request; a line that
  never is (a duplicate, a line after an unconditional one, or one whose requests are all
  taken by earlier lines) is reported with the lines that shadow it.

The search enumerates the facts the relevant conditions read, each over the literals the
conditions compare it with plus its default and one value no condition names: for
conditions that compare facts with literals this is exhaustive (a proof); past
``POINT_BUDGET`` combinations per (relation, action) it covers the ones nearest the
defaults. Each line it finds reachable is confirmed by asking the real enforcer.
"""

from __future__ import annotations

import ast
import hashlib
import itertools
import re
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import yaml
from casbin.model import Model

from audience_authz import contract
from audience_authz.engine.context import is_context
from audience_authz.engine.expressions import Compiled, ExpressionError, comparisons, names_in
from audience_authz.engine.policy import (
    ACTIONS,
    AUDIENCE_ACTIONS,
    AUDIENCE_RELATIONS,
    POLICY_FILES,
    RELATIONS,
    SERVICE_REASONS,
    Policy,
    PolicyError,
    Rule,
    _read_rules,
    casbin_syntax,
    check_pycasbin,
)
from audience_authz.policytools import published
from audience_authz.policytools.messages import (
    Problem,
    condition_problems,
    context_named_like_gathered,
    did_you_mean,
    fact_spec_problems,
    invariant_problems,
    located,
    never_gathered,
)

POINT_BUDGET = 150_000
REQUEST_TOKENS = ["r_rel", "r_act", "r_f"]
POLICY_TOKENS = ["p_rel", "p_act", "p_cond", "p_eft", "p_reason", "p_effects"]
EFFECT = "priority(p_eft) || deny"
_OTHER = "<other>"  # a string value no condition names


def check_policy(directory) -> list[Problem]:
    """Every problem, with file, line and column, in the policy's terms (messages.py). The
    answer is a function of the directory's files (and this process's code), so files checked
    once in this process are not searched again (a reload, a CLI run, a test)."""
    digest = _content_digest(Path(directory))
    key = None if digest is None else f"{POINT_BUDGET}:{digest}"  # the search's budget changes its answer
    if key is None:
        return located(directory, _problems(directory))
    if key not in _CHECKED:
        _CHECKED[key] = located(directory, _problems(directory))
    return list(_CHECKED[key])


_CHECKED: dict[str, list[Problem]] = {}


def _content_digest(directory: Path) -> str | None:
    """A digest of every file of ``directory`` and its ``tests/`` (None if it cannot be read)."""
    digest = hashlib.sha256()
    try:
        for folder in (directory, directory / "tests"):
            if folder.is_dir():
                for path in sorted(folder.iterdir()):
                    if path.is_file():
                        digest.update(str(path.relative_to(directory)).encode() + b"\0" + path.read_bytes() + b"\0")
    except OSError:
        return None
    return digest.hexdigest()


def _problems(directory) -> list[Problem]:
    check_pycasbin()  # PycasbinMismatch: no policy can be checked (or served) with this pycasbin
    directory = Path(directory)
    missing = [(name, 0, "file is missing") for name in POLICY_FILES if not (directory / name).is_file()]
    if missing:
        return missing
    problems = _model_problems(directory) + _facts_problems(directory) + _reasons_problems(directory)
    if problems:
        return problems
    try:
        policy = Policy.load(directory)
    except PolicyError as exc:
        return exc.problems
    except Exception as exc:  # noqa: BLE001 - anything else that stops it loading
        return [("model.conf", 0, f"cannot load the policy: {type(exc).__name__}: {exc}")]
    texts = (directory / "policy.csv").read_text().splitlines()
    conditions_sound = True
    for rule in policy.rules:
        problems += [("policy.csv", rule.line, m) for m in _rule_problems(policy, rule)]
        found = _condition_problems(policy, rule, texts[rule.line - 1])
        problems += [Problem("policy.csv", rule.line, m, column) for column, m in found]
        conditions_sound = conditions_sound and not found
    problems += contract_problems(directory)
    if not conditions_sound:
        return _ordered(problems)  # the search below needs every condition to compile
    problems += _Search(policy).problems()
    if not problems:
        problems += smoke_problems(policy)
    return _ordered(problems)


def _ordered(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: (POLICY_FILES.index(p[0]) if p[0] in POLICY_FILES else 9, p[1]))


# -- the files one by one --------------------------------------------------------------------

def _model_problems(directory: Path) -> list[Problem]:
    path = directory / "model.conf"

    def line_of(key: str) -> int:
        return _model_line(directory, key)

    model = Model()
    try:
        model.load_model(str(path))
    except Exception as exc:  # noqa: BLE001 - casbin's config parser raises plain exceptions
        return [("model.conf", 0, f"does not parse: {exc}")]
    found = []

    def value(sec: str):
        return model[sec][sec] if sec in model.keys() and sec in model[sec] else None  # noqa: SIM118 - casbin's Model has no __contains__

    r, p, e, m = value("r"), value("p"), value("e"), value("m")
    if r is None or r.tokens != REQUEST_TOKENS:
        found.append(("model.conf", line_of("r"), "[request_definition] must be r = rel, act, f"
                      " (the service asks with these three)"))
    if p is None or p.tokens != POLICY_TOKENS:
        found.append(("model.conf", line_of("p"), "[policy_definition] must be"
                      " p = rel, act, cond, eft, reason, effects (the columns of policy.csv)"))
    if e is None or e.value.replace(" ", "") != EFFECT.replace(" ", ""):
        found.append(("model.conf", line_of("e"), "[policy_effect] must be e = priority(p.eft) || deny:"
                      " the first matching line decides and no line denies"))
    if m is None:
        found.append(("model.conf", 0, "[matchers] m = ... is missing"))
    else:
        try:
            translated = casbin_syntax(m.value)
            Compiled(translated, {"holds": None})
            unknown = {n.id for n in ast.walk(ast.parse(translated.strip(), mode="eval"))
                       if isinstance(n, ast.Name)} - set(REQUEST_TOKENS) - set(POLICY_TOKENS) - {"holds", "True", "False"}
            if unknown:
                found.append(("model.conf", line_of("m"), f"the matcher reads unknown names {sorted(unknown)}"))
        except (ExpressionError, SyntaxError) as exc:
            found.append(("model.conf", line_of("m"), f"the matcher does not parse: {exc}"))
    return found


def _model_line(directory: Path, key: str) -> int:
    """The line of model.conf that defines ``key`` (r, p, e or m), or 0."""
    for number, line in enumerate((directory / "model.conf").read_text().splitlines(), start=1):
        if re.match(rf"\s*{key}\s*=", line):
            return number
    return 0


def _yaml_mapping(path: Path) -> tuple[yaml.MappingNode | None, list[Problem]]:
    try:
        node = yaml.compose(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        return None, [Problem(path.name, mark.line + 1 if mark else 1, f"not valid YAML: {yaml_error(exc)}",
                              mark.column + 1 if mark else 1)]
    if not isinstance(node, yaml.MappingNode):
        return None, [(path.name, 1, "must be a mapping")]
    return node, []


def yaml_error(exc: yaml.YAMLError) -> str:
    """A YAML error on one line (PyYAML's own message spans several, with a caret)."""
    parts = [getattr(exc, "context", None), getattr(exc, "problem", None)]
    return ", ".join(p for p in parts if p) or " ".join(str(exc).split())


def _facts_problems(directory: Path) -> list[Problem]:
    node, found = _yaml_mapping(directory / "facts.yaml")
    if node is None:
        return found
    seen, invariants = set(), []
    for key, spec_node in node.value:
        line, name = key.start_mark.line + 1, key.value
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            found.append(("facts.yaml", line, f"fact name {name!r} must be lower_snake_case (read as r.f.{name})"))
        if name in seen:
            found.append(("facts.yaml", line, f"fact {name!r} is declared twice"))
        seen.add(name)
        spec = yaml.safe_load(yaml.serialize(spec_node))
        if not isinstance(spec, dict):
            found.append(("facts.yaml", line, f"fact {name!r}: expected {{type, default, doc}}"))
            continue
        found += [("facts.yaml", line, m) for m in fact_spec_problems(name, spec)]
        invariants.append((line, name, spec.get("invariant")))
    for line, name, invariant in invariants:
        found += [("facts.yaml", line, f"fact {name!r}: {m}") for m in invariant_problems(invariant, seen)]
    return found


def _reasons_problems(directory: Path) -> list[Problem]:
    node, found = _yaml_mapping(directory / "reasons.yaml")
    if node is None:
        return found
    deny_key, deny = next(((k, v) for k, v in node.value if k.value == "deny"), (None, None))
    if not isinstance(deny, yaml.MappingNode):
        return [("reasons.yaml", node.start_mark.line + 1, "needs a 'deny:' mapping of reason codes to messages")]
    codes = set()
    for key, message in deny.value:
        line = key.start_mark.line + 1
        if not re.fullmatch(r"[a-z][a-z0-9_]*", key.value):
            found.append(("reasons.yaml", line, f"reason code {key.value!r} must be lower_snake_case"))
        if key.value in codes:
            found.append(("reasons.yaml", line, f"reason code {key.value!r} is listed twice"))
        codes.add(key.value)
        if not isinstance(message, yaml.ScalarNode) or not str(message.value).strip():
            found.append(("reasons.yaml", line, f"reason code {key.value!r} needs a message"))
    for code in SERVICE_REASONS:
        if code not in codes:
            found.append(("reasons.yaml", deny_key.start_mark.line + 1, f"the service gives {code!r}; list it"))
    return found + published.retired_problems(directory)


# -- the contract between the code and the policy (contract.py) -------------------------------

def contract_problems(directory) -> list[Problem]:
    """Where the files break what the code relies on: the facts the gatherer fills (names and
    types), the reason codes the code branches on, the effects the store applies."""
    directory = Path(directory)
    found: list[Problem] = []
    node, _ = _yaml_mapping(directory / "facts.yaml")
    declared = {}  # name -> (line, type name) of the facts the service is to gather
    for key, spec_node in (node.value if node is not None else []):
        spec = yaml.safe_load(yaml.serialize(spec_node))
        line = key.start_mark.line + 1
        if is_context(spec):  # sent by the caller (engine/context.py): any name the code does not gather
            if key.value in contract.FACTS:
                found.append(("facts.yaml", line, context_named_like_gathered(key.value)))
                declared[key.value] = (line, contract.FACTS[key.value].__name__)  # not missing as well
            continue
        declared[key.value] = (line, spec.get("type") if isinstance(spec, dict) else None)
    for name, (line, kind) in declared.items():
        wanted = contract.FACTS.get(name)
        if wanted is None:
            found.append(("facts.yaml", line, never_gathered(name)))
        elif kind != wanted.__name__:
            found.append(("facts.yaml", line, f"fact {name!r} is declared {kind}, but the service gathers it"
                          f" as {wanted.__name__} (engine/facts.py)"))
    after = 0  # where a missing fact belongs: after the declared one before it in the contract
    for name, kind in contract.FACTS.items():
        if name in declared:
            after = declared[name][0]
            continue
        found.append(("facts.yaml", after + 1, f"fact {name!r} ({kind.__name__}) is missing: the service gathers it"
                      " for every audience decision (engine/facts.py), which would fail without it"))
    node, _ = _yaml_mapping(directory / "reasons.yaml")
    deny_key, deny = next(((k, v) for k, v in (node.value if node is not None else []) if k.value == "deny"),
                          (None, None))
    codes = {k.value for k, _ in deny.value} if isinstance(deny, yaml.MappingNode) else set()
    for code in contract.POLICY_GIVEN_REASONS:
        module, does = contract.RELIED_REASONS[code]
        if code not in codes:
            found.append(("reasons.yaml", deny_key.start_mark.line + 1 if deny_key else 1,
                          f"reason code {code!r} is missing: {module} {does} (contract.RELIED_REASONS)"))
    try:
        rules = _read_rules(directory / "policy.csv")
    except PolicyError as exc:
        return found + exc.problems
    given = {rule.reason for rule in rules if rule.eft == "deny"}
    for code in contract.POLICY_GIVEN_REASONS:
        module, does = contract.RELIED_REASONS[code]
        if code not in given:
            found.append(("policy.csv", 0, f"no deny line gives {code!r}, which {module} {does}"
                          " (contract.RELIED_REASONS)"))
    return found


def smoke_problems(policy: Policy) -> list[Problem]:
    """Decide every (relation, action) the service asks, on the facts the gatherer really
    builds (``engine.facts.samples``): a policy that fails here would answer 500."""
    from audience_authz.engine.facts import samples

    found: list[Problem] = []
    by_action: dict[str, list] = {}
    for rel, act in contract.ASKED:
        try:
            gatherings = by_action.setdefault(act, samples(policy, act))
            for gathered in gatherings:
                if gathered.relation == rel:
                    policy.decide(rel, act, gathered.facts)
        except Exception as exc:  # noqa: BLE001 - any failure here is a decision that would fail
            found.append(("policy", 0, f"deciding ({rel}, {act}) on the facts the service gathers fails:"
                          f" {type(exc).__name__}: {exc}"))
    return found


def _rule_problems(policy: Policy, rule: Rule) -> list[str]:
    found = []
    if rule.rel != "*" and rule.rel not in RELATIONS:
        found.append(f"unknown relation {rule.rel!r}{did_you_mean(rule.rel, RELATIONS)} (known: {', '.join(RELATIONS)}, *)")
    if rule.act != "*" and rule.act not in ACTIONS:
        found.append(f"unknown action {rule.act!r}{did_you_mean(rule.act, ACTIONS)}")
    if rule.eft not in ("allow", "deny"):
        found.append(f"eft must be allow or deny, not {rule.eft!r}{did_you_mean(rule.eft, ('allow', 'deny'))}")
    retired = published.of_directory(policy.directory).retired if rule.eft == "deny" else {}
    if rule.eft == "deny" and rule.reason in retired:
        successor = retired[rule.reason]
        found.append(f"reason {rule.reason!r} is retired in reasons.yaml"
                     + (f"; give its replacement {successor!r}" if successor else " (deprecated); a line cannot give it"))
    elif rule.eft == "deny" and rule.reason not in policy.reasons:
        found.append(f"reason {rule.reason!r} is not listed in reasons.yaml{did_you_mean(rule.reason, policy.reasons)}")
    if rule.eft == "allow" and not re.fullmatch(r"[a-z][a-z0-9_]*", rule.reason):
        found.append(f"an allow line names a rule id (lower_snake_case) as its reason, not {rule.reason!r}")
    if rule.eft == "deny" and rule.effects:
        found.append("a deny line carries no effects")
    for name, arg in rule.effects:
        takes = contract.EFFECTS.get(name)
        if takes is None:
            found.append(f"unknown effect {name!r}{did_you_mean(name, sorted(contract.EFFECTS))}"
                         f" (the service applies only {', '.join(sorted(contract.EFFECTS))})")
        elif takes and arg not in takes:
            found.append(f"{name} takes {' or '.join(sorted(takes))}, not {arg!r}")
        elif not takes and arg:
            found.append(f"effect {name} takes no argument, not {arg!r}")
    return found


def _condition_problems(policy: Policy, rule: Rule, text: str) -> list[tuple[int, str]]:
    """(column, message) of each problem of the line's condition, in the policy's terms."""
    found = condition_problems(policy.facts_schema, rule.cond, text)
    if not found:
        try:
            Compiled(rule.cond)  # the engine's own check, should messages.py ever let one pass
        except (ExpressionError, SyntaxError) as exc:
            found = [(1, f"bad condition: {exc}")]
    return found


# -- completeness and reachability, by search over the facts ---------------------------------

def _applies(rule: Rule, rel: str, act: str) -> bool:
    return rule.rel in ("*", rel) and rule.act in ("*", act)


def _always_true(cond: str) -> bool:
    return not names_in(cond) and bool(Compiled(cond).eval({}))


class _Search:
    def __init__(self, policy: Policy):
        self.policy = policy
        self.rules = policy.rules
        self.compiled = {rule.line: Compiled(rule.cond) for rule in self.rules}
        self.reads = {rule.line: sorted(n[4:] for n in names_in(rule.cond)) for rule in self.rules}
        self.defaults = {n: getattr(policy.facts(), n) for n in policy.facts_schema}
        self.domains = self._domains()
        self.eval_errors: dict[int, str] = {}

    def _domains(self) -> dict[str, list]:
        """Each fact's values: its default first, then every literal a condition compares it
        with (and its neighbours, for numbers), then one value no condition names."""
        values: dict[str, list] = {n: [d] for n, d in self.defaults.items()}
        for rule in self.rules:
            for facts, literals in comparisons(rule.cond):
                for fact in facts:
                    if fact in values:
                        values[fact] += literals
        domains = {}
        for name, found in values.items():
            kind = type(self.defaults[name])
            if kind is bool:
                extra = [True, False]
            elif kind is int:
                extra = [v + d for v in found if type(v) is int for d in (-1, 1)] + [0, 1]  # noqa: E721
            else:
                extra = ["", _OTHER]
            domain = []
            for v in [*found, *extra]:
                if type(v) is kind and v not in domain:  # noqa: E721 - exact types
                    domain.append(v)
            domains[name] = domain
        return domains

    def _points(self, names: list[str]):
        """Assignments to ``names`` in order of how many facts differ from their defaults."""
        alternatives = {n: self.domains[n][1:] for n in names}
        for k in range(len(names) + 1):
            for combo in itertools.combinations(names, k):
                for values in itertools.product(*(alternatives[n] for n in combo)):
                    yield dict(zip(combo, values))

    def _first(self, applicable: list[Rule], env: dict) -> Rule | None:
        for rule in applicable:
            if self._holds(rule, env):
                return rule
        return None

    def _holds(self, rule: Rule, env: dict) -> bool:
        if rule.line in self.eval_errors:
            return False
        try:
            return bool(self.compiled[rule.line].eval(env))
        except Exception as exc:  # noqa: BLE001 - reported as the line's problem
            self.eval_errors[rule.line] = f"{type(exc).__name__}: {exc}"
            return False

    def _pairs(self) -> list[tuple[str, str]]:
        rels = list(dict.fromkeys([*AUDIENCE_RELATIONS, *RELATIONS, *(r.rel for r in self.rules if r.rel != "*")]))
        acts = list(dict.fromkeys([*AUDIENCE_ACTIONS, *ACTIONS, *(r.act for r in self.rules if r.act != "*")]))
        concrete = [(r.rel, r.act) for r in self.rules if "*" not in (r.rel, r.act)]
        return list(dict.fromkeys([*concrete, *itertools.product(rels, acts)]))

    def _must_decide(self, rel: str, act: str) -> bool:
        return (rel, act) in contract.ASKED

    def _prefix(self, rel: str, act: str) -> tuple[list[Rule], bool]:
        """The lines that can decide (rel, act), up to the first unconditional one."""
        applicable = []
        for rule in self.rules:
            if _applies(rule, rel, act):
                applicable.append(rule)
                if _always_true(rule.cond):
                    return applicable, True
        return applicable, False

    def problems(self) -> list[Problem]:
        unhit = {rule.line for rule in self.rules}
        witnesses: dict[int, tuple[str, str, dict]] = {}
        found: list[Problem] = []
        env_facts = SimpleNamespace(**self.defaults)
        env = {"r": SimpleNamespace(f=env_facts)}
        for rel, act in self._pairs():
            applicable, complete = self._prefix(rel, act)
            must_decide = self._must_decide(rel, act) and not complete
            if not must_decide and not unhit & {r.line for r in applicable}:
                continue
            names = sorted({n for r in applicable for n in self.reads[r.line]})
            undecided = None
            for count, point in enumerate(self._points(names)):
                if count >= POINT_BUDGET:
                    break
                env_facts.__dict__.update(self.defaults)
                env_facts.__dict__.update(point)
                first = self._first(applicable, env)
                if first is None:
                    if undecided is None:
                        undecided = point
                elif first.line in unhit and (rel, act) in contract.ASKED:  # a request the service makes
                    unhit.discard(first.line)
                    witnesses[first.line] = (rel, act, point)
                if (undecided is not None or not must_decide) and not unhit & {r.line for r in applicable}:
                    break
            if must_decide and undecided is not None:
                last = applicable[-1].line if applicable else self.rules[-1].line
                found.append(Problem("policy.csv", last, f"no line decides ({rel}, {act}) when {_describe(undecided)}:"
                              f" such requests are denied as no_matching_rule; add a line after line {last}"
                              f" that decides them (e.g. p, {rel}, {act}, True, deny, <reason>,)", 1))
        failed = [("policy.csv", line, f"the condition cannot be evaluated: {error}")
                  for line, error in self.eval_errors.items()]
        if failed:  # the cause: what the search found besides follows from these lines
            return failed
        found += self._confirm(witnesses)
        found += [("policy.csv", line, why) for line in sorted(unhit) if (why := self._why_unreachable(line))]
        return found

    def _confirm(self, witnesses) -> list[Problem]:
        """Ask the real enforcer: does each line found reachable decide its witness?"""
        found = []
        for line, (rel, act, point) in witnesses.items():
            try:
                decision = self.policy.decide(rel, act, self.policy.facts(**point))
            except Exception:  # noqa: BLE001 - a condition that fails is reported on its own line
                continue
            if decision.rule is None or decision.rule.line != line:
                got = decision.rule.line if decision.rule else "no line"
                found.append(("model.conf", _model_line(self.policy.directory, "m"),
                              f"the enforcer decides ({rel}, {act}) when {_describe(point)}"
                              f" by {got}, not by policy.csv line {line} as a first-match list would"))
        return found

    def _why_unreachable(self, line: int) -> str | None:
        """Why ``line`` never decides (None: its relation or action is unknown, a problem
        reported as such)."""
        rule = next(r for r in self.rules if r.line == line)
        known_rels, known_acts = {*AUDIENCE_RELATIONS, *RELATIONS, "*"}, {*AUDIENCE_ACTIONS, *ACTIONS, "*"}
        if rule.rel not in known_rels or rule.act not in known_acts:
            return None
        if not any(_applies(rule, rel, act) for rel, act in contract.ASKED):
            return (f"never decides: the service never asks ({rule.rel}, {rule.act}) (the pairs it asks are"
                    " service/contract.py's ASKED)")
        cond = ast.dump(ast.parse(rule.cond.strip(), mode="eval"))
        for earlier in self.rules:
            if earlier.line >= line:
                break
            covers = earlier.rel in ("*", rule.rel) and earlier.act in ("*", rule.act)
            if covers and ast.dump(ast.parse(earlier.cond.strip(), mode="eval")) == cond:
                if earlier.values == rule.values:
                    return f"never decides: it repeats line {earlier.line} (p, {', '.join(earlier.values[:3])})"
                return (f"never decides: line {earlier.line} (p, {', '.join(earlier.values[:3])}) has the same"
                        f" condition and comes first, so it answers {_answer(earlier)} where this line would"
                        f" answer {_answer(rule)}")
            if covers and _always_true(earlier.cond):
                return (f"never decides: line {earlier.line} (p, {', '.join(earlier.values[:3])}) decides every"
                        " request this line could match before it")
        blockers, holds, exhaustive = Counter(), 0, True
        covering = Counter()  # earlier lines whose condition holds wherever this one's does
        env_facts = SimpleNamespace(**self.defaults)
        env = {"r": SimpleNamespace(f=env_facts)}
        for rel, act in self._pairs():
            if not _applies(rule, rel, act) or (rel, act) not in contract.ASKED:
                continue
            applicable = [r for r in self.rules if _applies(r, rel, act) and r.line <= line]
            names = sorted({n for r in applicable for n in self.reads[r.line]})
            for count, point in enumerate(self._points(names)):
                if count >= POINT_BUDGET:
                    exhaustive = False
                    break
                env_facts.__dict__.update(self.defaults)
                env_facts.__dict__.update(point)
                if self._holds(rule, env):
                    holds += 1
                    blockers[self._first(applicable, env).line] += 1
                    covering.update(r.line for r in applicable if r.line < line and self._holds(r, env))
        scope = "" if exhaustive else (f" (not a proof: the search stopped after the {POINT_BUDGET} requests per"
                                       " action nearest the defaults)")
        if not holds:
            return f"never decides: its condition {rule.cond!r} holds for no request{scope}"
        covered_by = [str(n) for n, c in sorted(covering.items()) if c == holds]
        if covered_by:
            return (f"never decides: line(s) {', '.join(covered_by)} before it match every request"
                    f" this line matches{scope}")
        shadows = ", ".join(str(n) for n, _ in sorted(blockers.items()))
        return f"never decides: every request it matches is decided first by one of lines {shadows}{scope}"


def _answer(rule: Rule) -> str:
    effects = " ".join(f"{n}:{a}" if a else n for n, a in rule.effects)
    return f"{rule.eft} {rule.reason}" + (f" with {effects}" if effects else "")


def _describe(point: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in point.items()) or "every fact has its default"

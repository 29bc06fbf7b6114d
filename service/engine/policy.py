"""The policy: Casbin model and rules from ``policy/``, and the decisions they give.

Everything that is a rule lives in the files; this module only loads them and asks
pycasbin. Two things are done for speed, neither changes a decision:

* one enforcer per (relation, action) holding only the lines that can match that pair,
  in file order (Casbin's FastEnforcer indexes the same way but keeps lines in a set,
  which loses the order a first-match policy depends on);
* each enforcer keeps the expressions it has parsed, per thread, instead of re-parsing
  the matcher text of every line on every call as stock pycasbin does.

The second relies on a private pycasbin hook, ``Enforcer._get_expression`` (pycasbin
has no public one); ``check_pycasbin`` proves at the first load of a process that the
installed release still calls it and still decides as this module expects, and otherwise
stops the process with ``PycasbinMismatch`` before any decision is made.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import hashlib
import importlib.metadata
import inspect
import threading
from dataclasses import dataclass, field
from pathlib import Path

import casbin
import yaml

from audience_authz.config import shipped_policy_dir
from audience_authz.engine.expressions import PARSING, Compiled
from audience_authz.vocabulary import (  # noqa: F401 - re-exported
    ACCOUNT_ACTIONS,
    ACCOUNT_RELATIONS,
    ACTIONS,
    AUDIENCE_ACTIONS,
    AUDIENCE_RELATIONS,
    FACT_TYPES,
    FAULT_REASONS,
    MATRIX_ACTIONS,
    OPTIONAL_FILES,
    POLICY_FILES,
    RELATIONS,
    SCOPE_ACTIONS,
    SERVICE_REASONS,
)


class PolicyError(Exception):
    """The policy files cannot be used; ``problems`` lists (file, line, message)."""

    def __init__(self, problems: list[tuple[str, int, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{f}:{n}: {m}" for f, n, m in problems))


# The pycasbin releases this module was tested with (pyproject.toml pins the same range).
TESTED_PYCASBIN = ">=2.8,<2.9"
POLICY_COLUMNS = ("rel", "act", "cond", "eft", "reason", "effects")  # p = ... in model.conf


class PycasbinMismatch(RuntimeError):
    """The installed pycasbin does not behave as this module relies on: nothing may be decided."""


def casbin_syntax(expr: str) -> str:
    """A matcher as the Python expression pycasbin evaluates (``&&``, ``||``, ``!``
    rewritten by pycasbin itself, so the service reads matchers exactly as Casbin does)."""
    with PARSING:  # pycasbin's SimpleEval parses it (expressions.PARSING says why)
        return casbin.Enforcer._get_expression(expr, None).expr


class _Enforcer(casbin.Enforcer):
    """pycasbin's enforcer with its parsed matcher expressions kept (per thread)."""

    def __init__(self, *args, **kwargs):
        self._parsed = threading.local()
        self._conditions: dict[str, Compiled] = {}
        super().__init__(*args, **kwargs)
        self.add_function("holds", self._holds)

    def _holds(self, cond: str, facts) -> bool:
        """The matcher's holds(p.cond, r.f): does a line's condition hold for these facts?"""
        compiled = self._conditions.get(cond)
        if compiled is None:
            compiled = self._conditions[cond] = Compiled(cond)
        return compiled.eval({"r": _Request(facts)})

    def _get_expression(self, expr, functions=None):  # overrides pycasbin's private hook
        cache = getattr(self._parsed, "cache", None)
        if cache is None:
            cache = self._parsed.cache = {}
        parsed = cache.get(expr)
        if parsed is None:
            parsed = cache[expr] = Compiled(casbin_syntax(expr), functions)
        return parsed


def _enforcer(model, lines: list[list[str]]) -> _Enforcer:
    """An enforcer of ``model`` (a model.conf path or a casbin Model) over ``lines`` in order."""
    enforcer = _Enforcer(model)
    if lines:
        enforcer.get_model().add_policies("p", "p", lines)
    return enforcer


_PROBE_MODEL = f"""
[request_definition]
r = rel, act, f
[policy_definition]
p = {", ".join(POLICY_COLUMNS)}
[policy_effect]
e = priority(p.eft) || deny
[matchers]
m = r.rel == p.rel && !(r.act != p.act) && holds(p.cond, r.f)
"""


_OWN_ATTRIBUTES = {"_parsed", "_conditions", "_holds"}  # what _Enforcer adds to pycasbin's class


@functools.cache
def check_pycasbin() -> None:
    """Prove, once per process, that the installed pycasbin still works the way this
    module relies on: its private matcher hook exists, is called by ``enforce_ex`` (so
    ``_Enforcer``'s override is the one evaluating), rewrites ``&& || !`` as before, the
    first matching line decides and is the one reported, its policy-line reader splits
    lines as before, and the names ``_Enforcer`` adds are not pycasbin's. Else
    ``PycasbinMismatch``, naming the release, what changed and the tested range."""
    version = importlib.metadata.version("pycasbin")
    try:
        problem = _pycasbin_problem()
    except Exception as exc:  # noqa: BLE001 - any failure of the probe is the mismatch
        problem = f"the probe failed: {type(exc).__name__}: {exc}"
    if problem:
        raise PycasbinMismatch(
            f"pycasbin {version} is not a release audience-authz works with ({problem}); "
            f"install a tested one: pip install 'pycasbin{TESTED_PYCASBIN}'")


def _pycasbin_problem() -> str | None:
    hook = inspect.getattr_static(casbin.Enforcer, "_get_expression", None)
    if not isinstance(hook, staticmethod):
        return "casbin.Enforcer._get_expression, the matcher hook, is gone or no longer a static method"
    rewritten = casbin_syntax("a && !b || c != d")
    if rewritten.split() != ["a", "and", "not", "b", "or", "c", "!=", "d"]:
        return f"Enforcer._get_expression rewrites 'a && !b || c != d' as {rewritten!r}"
    if _read_line("p, r, a, holds(x, [1, 2]), allow, why, e:1") != ["r", "a", "holds(x, [1, 2])", "allow", "why", "e:1"]:
        return "casbin.persist.load_policy_line no longer splits a policy line at its top-level commas"
    stock = casbin.Enforcer(casbin.Enforcer.new_model(text=_PROBE_MODEL))
    taken = _OWN_ATTRIBUTES & (set(dir(stock)) | set(vars(stock)))
    if taken:
        return f"casbin.Enforcer now has attributes of its own named {sorted(taken)}, which _Enforcer sets"
    lines = [["r", "a", "r.f.n > 1", "deny", "first", ""], ["r", "a", "r.f.n > 1", "allow", "second", ""],
             ["r", "a", "True", "allow", "last", ""]]
    probe = _enforcer(casbin.Enforcer.new_model(text=_PROBE_MODEL), lines)
    answers = [probe.enforce_ex("r", "a", _Probe(n)) for n in (2, 0)]
    if getattr(probe._parsed, "cache", None) is None:
        return "enforce_ex no longer parses matchers through Enforcer._get_expression"
    if [(allowed, list(rule)) for allowed, rule in answers] != [(False, lines[0]), (True, lines[2])]:
        return f"enforce_ex answers {answers} where the first matching line should decide"
    return None


@dataclass(frozen=True)
class _Probe:
    n: int


class _Request:
    """What a condition sees as ``r``: the request's facts as ``r.f``."""

    __slots__ = ("f",)

    def __init__(self, facts):
        self.f = facts


@dataclass(frozen=True)
class Rule:
    """One policy line, with where it stands in policy.csv."""

    line: int
    rel: str
    act: str
    cond: str
    eft: str
    reason: str
    effects: tuple[tuple[str, str], ...]  # (effect type, argument or "")

    @property
    def values(self) -> tuple[str, ...]:
        return (self.rel, self.act, self.cond, self.eft, self.reason, " ".join(
            f"{name}:{arg}" if arg else name for name, arg in self.effects))


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    rule: Rule | None
    effects: tuple[tuple[str, str], ...] = ()

    @property
    def decision(self) -> str:
        return "allow" if self.allowed else "deny"

    def effect_arg(self, name: str) -> str | None:
        """The argument of effect ``name`` if this decision carries it, else None."""
        for effect, arg in self.effects:
            if effect == name:
                return arg
        return None


@dataclass
class Policy:
    """The loaded policy directory: one per process, built at start-up, then read only."""

    directory: Path
    version: str
    rules: list[Rule]
    facts_schema: dict[str, dict]
    reasons: dict[str, str]
    facts_class: type
    loaded_at: datetime.datetime = field(  # when this process built it (shown by the console)
        default_factory=lambda: datetime.datetime.now(datetime.timezone.utc), compare=False)
    _enforcers: dict[tuple[str, str], _Enforcer] = field(default_factory=dict, repr=False)

    # -- loading ---------------------------------------------------------------------------
    @classmethod
    def load(cls, directory: str | Path | None = None) -> Policy:
        """The policy of ``directory`` (default: the shipped one)."""
        check_pycasbin()
        directory = Path(directory) if directory is not None else shipped_policy_dir()
        missing = [(name, 0, "file is missing") for name in POLICY_FILES
                   if not (directory / name).is_file()]
        if missing:
            raise PolicyError(missing)
        digest = hashlib.sha256()
        # the version names everything a reload vets, the proven properties too: an edit of
        # properties.yaml alone is a new version (a replayed decision names what vetted it)
        for name in (*POLICY_FILES, *(n for n in OPTIONAL_FILES if (directory / n).is_file())):
            digest.update(name.encode() + b"\0" + (directory / name).read_bytes() + b"\0")
        facts_schema = yaml.safe_load((directory / "facts.yaml").read_text()) or {}
        reasons = (yaml.safe_load((directory / "reasons.yaml").read_text()) or {}).get("deny", {})
        rules = _read_rules(directory / "policy.csv")
        policy = cls(
            directory=directory,
            version=digest.hexdigest()[:16],
            rules=rules,
            facts_schema=facts_schema,
            reasons=reasons,
            facts_class=_facts_class(facts_schema),
        )
        policy._build_enforcers()
        return policy

    def _build_enforcers(self) -> None:
        model_path = str(self.directory / "model.conf")
        pairs = {(rel, act) for rel in RELATIONS for act in ACTIONS}
        pairs |= {(r.rel, r.act) for r in self.rules if "*" not in (r.rel, r.act)}
        for rel, act in pairs:
            lines = [list(r.values) for r in self.rules if r.rel in ("*", rel) and r.act in ("*", act)]
            self._enforcers[(rel, act)] = _enforcer(model_path, lines)
        self._by_values = {}
        for rule in self.rules:  # an exact repeat of a line never decides: the first one does
            self._by_values.setdefault(rule.values, rule)

    # -- deciding --------------------------------------------------------------------------
    def facts(self, **values) -> object:
        """A facts object: the declared defaults overridden by ``values`` (unknown names raise)."""
        return self.facts_class(**values)

    def decide(self, rel: str, act: str, facts: object) -> Decision:
        enforcer = self._enforcers.get((rel, act))
        if enforcer is None:  # an action or relation the policy has never heard of
            return Decision(False, "no_matching_rule", None)
        allowed, matched = enforcer.enforce_ex(rel, act, facts)
        if not matched:
            return Decision(False, "no_matching_rule", None)
        rule = self._by_values[tuple(matched)]
        return Decision(allowed, rule.reason, rule, rule.effects if allowed else ())

    def outcomes(self) -> set[tuple[str, str, str]]:
        """Every (action, decision, reason) this policy can give: its lines', and the
        service's own denials (no line matched, a fault) for every action."""
        known = {(act, "deny", reason) for act in ACTIONS for reason in SERVICE_REASONS}
        for rule in self.rules:
            for act in (ACTIONS if rule.act == "*" else (rule.act,)):
                known.add((act, "allow" if rule.eft == "allow" else "deny", rule.reason))
        return known

    def message(self, code: str) -> str:
        return self.reasons.get(code, code.replace("_", " "))

    @functools.cached_property
    def context_facts(self) -> tuple[str, ...]:
        """The facts the caller supplies (facts.yaml ``source: context``), in file order."""
        return tuple(n for n, s in self.facts_schema.items() if isinstance(s, dict) and s.get("source") == "context")

    @functools.cached_property
    def required_context(self) -> tuple[str, ...]:
        """The context facts a request must carry (``required: true``): no default stands in."""
        return tuple(n for n in self.context_facts if self.facts_schema[n].get("required") is True)


def _read_line(text: str) -> list[str] | None:
    """The fields of a ``p`` line, split by Casbin's own policy-line reader (commas inside
    brackets or parentheses stay in their field); None for a line of another type."""
    model = casbin.Model()
    model.add_def("p", "p", ", ".join(POLICY_COLUMNS))
    casbin.persist.load_policy_line(text, model)
    lines = model["p"]["p"].policy
    return lines[0] if lines else None


def _read_rules(path: Path) -> list[Rule]:
    rules, problems = [], []
    for number, text in enumerate(path.read_text().splitlines(), start=1):
        text = text.strip()
        if not text or text.startswith("#"):
            continue
        kind = text.split(",", 1)[0].strip()
        try:
            values = _read_line(text) if kind == "p" else None
        except IndexError:  # a closing bracket without its opening one
            problems.append((path.name, number, "unbalanced brackets or parentheses"))
            continue
        if values is None:
            problems.append((path.name, number, f"unknown line type {kind!r}"))
            continue
        values = list(values)
        if len(values) == 5:
            values.append("")
        if len(values) != 6:
            problems.append((path.name, number, f"expected 6 fields, found {len(values)}"))
            continue
        rel, act, cond, eft, reason, effects = values
        parsed = tuple((e.partition(":")[0], e.partition(":")[2]) for e in effects.split())
        rules.append(Rule(number, rel, act, cond, eft, reason, parsed))
    if problems:
        raise PolicyError(problems)
    return rules


def _facts_class(schema: dict[str, dict]) -> type:
    fields = []
    for name, spec in schema.items():
        kind = FACT_TYPES[spec.get("type", "str")]
        fields.append((name, kind, dataclasses.field(default=kind(spec.get("default", kind())))))
    return dataclasses.make_dataclass("Facts", fields, frozen=True, slots=True)

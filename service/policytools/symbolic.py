"""The policy as logic: each line's condition, and first-match decisions, as z3 formulas.

A condition is an expression over the facts (``r.f.<name>``) in the restricted language of
``engine/expressions.py``. Here it becomes a z3 term with Python's meaning: a bool fact is a
Bool, an int fact an (unbounded) Int, a str fact a String (every string, not a sample), and
``and``/``or``/``not``/``in``/comparisons keep their Python semantics on those types
(``True == 1``, a string is never equal to a number, ``x in (a, b)`` is ``x == a or x == b``,
a bare fact is its truthiness). What the encoder cannot express exactly is refused with
``Unsupported`` rather than approximated.

The decision list of one (relation, action) becomes regions: the facts where line *i* is
the first whose condition holds (``c_i and not c_1 .. c_i-1``), and the facts where none
does (``no_matching_rule``). The regions partition every possible request, so a property
proven on each region is proven for every request, and two policies differ exactly where
regions with different outcomes overlap. ``policy verify`` and ``policy diff --symbolic``
are built on this.

Facts the service guarantees relations between are declared in ``facts.yaml`` as
``invariant: <expression>`` (e.g. ``not r.f.target_is_self or r.f.target_known``), and a
fact the gatherer does not set for an action (``contract.gathered_facts``) is its default
there: both restrict the requests considered to those the service can really make. A fact
the caller sends (``source: context``, ``engine/context.py``) is free for every action: any
value of its declared type (a string of at most ``context.MAX_STR`` characters).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

import z3

from audience_authz import contract
from audience_authz.engine import context
from audience_authz.engine.expressions import comparisons
from audience_authz.engine.policy import Policy, Rule
from audience_authz.vocabulary import FACT_TYPES

NO_MATCH = "no_matching_rule"


class Unsupported(ValueError):
    """An expression the encoder cannot translate exactly."""


@dataclass(frozen=True)
class Outcome:
    """What a region decides: the deciding line (None: no line), decision, reason, effects."""

    rule: Rule | None
    decision: str
    reason: str
    effects: tuple[str, ...]

    @classmethod
    def of(cls, rule: Rule | None) -> Outcome:
        if rule is None:
            return cls(None, "deny", NO_MATCH, ())
        effects = tuple(f"{n}:{a}" if a else n for n, a in rule.effects) if rule.eft == "allow" else ()
        return cls(rule, rule.eft, rule.reason, effects)

    @property
    def key(self) -> tuple:
        """What a caller sees: two outcomes with the same key are the same answer."""
        return (self.decision, self.reason, tuple(sorted(self.effects)))

    def where(self) -> str:
        return f"policy.csv:{self.rule.line}" if self.rule else "no line (default deny)"

    def describe(self) -> str:
        text = f"{self.decision} {self.reason}"
        return text + (f" [{' '.join(self.effects)}]" if self.effects else "")


@dataclass(frozen=True)
class Region:
    outcome: Outcome
    formula: z3.BoolRef


# a value while translating: (kind, term); kind is bool, int, str, tuple (term: a list of
# values) or truth (an and/or of non-bool operands: usable only as a condition)
Value = tuple[str, object]


class Encoder:
    """The facts of ``policy`` as z3 constants, and its conditions as formulas over them."""

    def __init__(self, policy: Policy):
        self.policy = policy
        self.kinds: dict[str, type] = {}
        self.vars: dict[str, z3.ExprRef] = {}
        self.defaults = {}
        self.supplied = set(policy.context_facts)  # the caller's facts: free in every request
        for name, spec in policy.facts_schema.items():
            kind = FACT_TYPES[spec.get("type", "str")]
            self.kinds[name] = kind
            self.defaults[name] = kind(spec.get("default", kind()))
            self.vars[name] = {bool: z3.Bool, int: z3.Int, str: z3.String}[kind](name)
        self._cache: dict[tuple, z3.BoolRef] = {}
        self._trees: dict[str, ast.Expression] = {}
        self._reads: dict[str, list[str]] = {}
        self._invariants: dict[tuple, list[z3.BoolRef]] = {}
        self.literals: dict[str, set] = {name: set() for name in self.vars}
        for rule in policy.rules:
            self._collect_literals(rule.cond)
        for spec in policy.facts_schema.values():
            declared = spec.get("invariant") or []
            for text in [declared] if isinstance(declared, str) else declared:
                self._collect_literals(text)

    # -- expressions -----------------------------------------------------------------------------
    def condition(self, text: str, consts: dict | None = None) -> z3.BoolRef:
        """The truth of expression ``text``; ``consts`` gives other dotted names fixed values."""
        consts = consts or {}
        try:
            tree = self._trees.get(text) or self._trees.setdefault(text, ast.parse(text.strip(), mode="eval"))
        except SyntaxError as exc:
            raise Unsupported(f"syntax error in {text!r}: {exc.msg}") from None
        # the same text with the same values of the names it reads is the same formula
        read = self._reads.get(text)
        if read is None:
            read = self._reads[text] = sorted({n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
                                              | {_dotted(n) for n in ast.walk(tree) if isinstance(n, ast.Attribute)})
        key = (text, *(repr(sorted(v) if isinstance(v, (set, frozenset)) else v) for v in
                       (consts.get(n) for n in read)))
        formula = self._cache.get(key)
        if formula is None:
            formula = self._cache[key] = _truth(self._value(tree.body, consts, text))
        return formula

    def _value(self, node: ast.AST, consts: dict, text: str) -> Value:
        if isinstance(node, ast.Constant):
            return _constant(node.value, text)
        if isinstance(node, ast.Name):
            if node.id in ("True", "False"):
                return ("bool", z3.BoolVal(node.id == "True"))
            if node.id in consts:
                return _constant(consts[node.id], text)
            raise Unsupported(f"unknown name {node.id!r} in {text!r}")
        if isinstance(node, ast.Attribute):
            dotted = _dotted(node)
            if dotted.startswith("r.f.") and dotted[4:] in self.vars:
                name = dotted[4:]
                return (self.kinds[name].__name__, self.vars[name])
            if dotted in consts:
                return _constant(consts[dotted], text)
            raise Unsupported(f"{dotted!r} in {text!r} is not a fact of facts.yaml")
        if isinstance(node, (ast.Tuple, ast.List)):
            return ("tuple", [self._value(e, consts, text) for e in node.elts])
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return ("bool", z3.Not(_truth(self._value(node.operand, consts, text))))
        if isinstance(node, ast.BoolOp):
            values = [self._value(v, consts, text) for v in node.values]
            combine = z3.And if isinstance(node.op, ast.And) else z3.Or
            kind = "bool" if all(k == "bool" for k, _ in values) else "truth"
            return (kind, combine(*[_truth(v) for v in values]))
        if isinstance(node, ast.Compare):
            operands = [self._value(o, consts, text) for o in [node.left, *node.comparators]]
            parts = [_compare(op, a, b, text) for op, a, b in zip(node.ops, operands, operands[1:])]
            return ("bool", z3.And(*parts) if len(parts) > 1 else parts[0])
        raise Unsupported(f"{type(node).__name__} is not supported in {text!r}")

    def _collect_literals(self, text: str) -> None:
        """The string literals each fact is compared with (to say "a value no line names")."""
        for names, found in comparisons(text):
            for name in names:
                if name in self.literals:
                    self.literals[name] |= set(found)

    # -- requests ---------------------------------------------------------------------------------
    def invariants(self, action: str) -> list[z3.BoolRef]:
        """What holds of every request the service makes for ``action``."""
        gathered = tuple(contract.gathered_facts(action))
        found = self._invariants.get(gathered)
        if found is None:
            found = self._invariants[gathered] = [z3.And(*self._invariants_of(set(gathered)))]
        return found

    def _invariants_of(self, gathered: set[str]) -> list[z3.BoolRef]:
        found = []
        for spec in self.policy.facts_schema.values():
            declared = spec.get("invariant") or []
            for text in [declared] if isinstance(declared, str) else declared:
                found.append(self.condition(text))
        for name, var in self.vars.items():
            if name in self.supplied:
                if self.kinds[name] is str:  # context.supplied refuses longer ones
                    found.append(z3.Length(var) <= context.MAX_STR)
            elif name not in gathered:
                found.append(var == _constant(self.defaults[name], name)[1])
        return found

    def regions(self, rel: str, act: str) -> list[Region]:
        """The first-match regions of (rel, act), in file order, then the no-match region."""
        regions, none_before = [], []
        for rule in self.policy.rules:
            if rule.rel not in ("*", rel) or rule.act not in ("*", act):
                continue
            cond = self.condition(rule.cond)
            regions.append(Region(Outcome.of(rule), z3.And(*none_before, cond) if none_before else cond))
            none_before.append(z3.Not(cond))
        regions.append(Region(Outcome.of(None), z3.And(*none_before) if none_before else z3.BoolVal(True)))
        return regions

    def example(self, *constraints: z3.BoolRef, also: Encoder | None = None) -> dict | None:
        """Facts meeting ``constraints``, as many as can be at their defaults (readable
        examples), or None when there are none; with the facts of ``also`` (another policy's
        encoder) too, such as the caller's facts only a candidate declares."""
        encoders = [self] + ([also] if also is not None else [])
        optimizer = z3.Optimize()
        optimizer.add(*constraints)
        for encoder in encoders:
            for name, var in encoder.vars.items():
                optimizer.add_soft(var == _constant(encoder.defaults[name], name)[1])
        if optimizer.check() != z3.sat:
            return None
        model = optimizer.model()
        return {**(also.facts_of(model) if also is not None else {}), **self.facts_of(model)}

    def facts_of(self, model: z3.ModelRef) -> dict:
        """Every fact's value in ``model`` (a fact the model leaves free: its default)."""
        values = {}
        for name, var in self.vars.items():
            got = model.eval(var, model_completion=False)
            if z3.eq(got, var):
                values[name] = self.defaults[name]
            elif self.kinds[name] is bool:
                values[name] = z3.is_true(got)
            elif self.kinds[name] is int:
                values[name] = got.as_long()
            else:
                values[name] = got.as_string()
        return values

    def show(self, facts: dict, only: set[str] | None = None) -> str:
        """``name=value, ...``; a string no line names is marked as standing for any such."""
        parts = []
        for name, value in facts.items():
            if only is not None and name not in only:
                continue
            shown = repr(value)
            if self.kinds[name] is str and value not in self.literals[name] and value != self.defaults[name]:
                shown += " (any value the policy does not name)"
            parts.append(f"{name}={shown}")
        return ", ".join(parts)

    def text(self, formula: z3.BoolRef) -> str:
        """A formula as a condition in the policy's own language."""
        return _text(formula)


def asked_pairs(relations=None, actions=None) -> list[tuple[str, str]]:
    return [(rel, act) for rel, act in contract.ASKED
            if (relations is None or rel in relations) and (actions is None or act in actions)]


def simplify(formula: z3.BoolRef, context: list[z3.BoolRef] | None = None) -> z3.BoolRef:
    """A shorter equivalent of ``formula`` where ``context`` holds, without the parts that
    ``context`` implies by itself."""
    context = context or []
    goal = z3.Goal()
    goal.add(*context, formula)
    result = z3.Then("simplify", "ctx-solver-simplify", "simplify")(goal)
    parts = [f for sub in result for f in sub]
    kept = []
    for part in parts:
        solver = z3.Solver()
        solver.add(*context, z3.Not(part))
        if solver.check() != z3.unsat:  # not implied by the context alone: part of the region
            kept.append(part)
    return z3.And(*kept) if len(kept) > 1 else (kept[0] if kept else z3.BoolVal(True))


# -- helpers ------------------------------------------------------------------------------------

def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def _constant(value, text: str) -> Value:
    if isinstance(value, bool):
        return ("bool", z3.BoolVal(value))
    if isinstance(value, int):
        return ("int", z3.IntVal(value))
    if isinstance(value, str):
        return ("str", z3.StringVal(value))
    if isinstance(value, (tuple, list, set, frozenset)):
        items = sorted(value) if isinstance(value, (set, frozenset)) else value
        return ("tuple", [_constant(v, text) for v in items])
    raise Unsupported(f"the constant {value!r} in {text!r} is not a bool, int or str")


def _truth(value: Value) -> z3.BoolRef:
    kind, term = value
    if kind in ("bool", "truth"):
        return term
    if kind == "int":
        return term != 0
    if kind == "str":
        return term != z3.StringVal("")
    return z3.BoolVal(bool(term))  # a tuple: true when not empty


def _as_int(value: Value) -> z3.ArithRef:
    kind, term = value
    return z3.If(term, z3.IntVal(1), z3.IntVal(0)) if kind == "bool" else term


def _equal(a: Value, b: Value, text: str) -> z3.BoolRef:
    (ka, ta), (kb, tb) = a, b
    if "truth" in (ka, kb):
        raise Unsupported(f"the value of an and/or of non-bool operands is compared in {text!r}")
    if "tuple" in (ka, kb):
        if ka == kb == "tuple":
            if len(ta) != len(tb):
                return z3.BoolVal(False)
            return z3.And(*[_equal(x, y, text) for x, y in zip(ta, tb)]) if ta else z3.BoolVal(True)
        return z3.BoolVal(False)
    if ka == kb:
        return ta == tb
    if {ka, kb} == {"bool", "int"}:  # bool is an int in Python: True == 1
        return _as_int(a) == _as_int(b)
    return z3.BoolVal(False)  # a string never equals a number


def _compare(op: ast.cmpop, a: Value, b: Value, text: str) -> z3.BoolRef:
    if isinstance(op, (ast.In, ast.NotIn)):
        kb, tb = b
        if kb == "tuple":
            found = z3.Or(*[_equal(a, e, text) for e in tb]) if tb else z3.BoolVal(False)
        elif kb == "str" and a[0] == "str":
            found = z3.Contains(tb, a[1])
        else:
            raise Unsupported(f"'in' needs a tuple or a string on its right in {text!r}")
        return z3.Not(found) if isinstance(op, ast.NotIn) else found
    if isinstance(op, ast.Eq):
        return _equal(a, b, text)
    if isinstance(op, ast.NotEq):
        return z3.Not(_equal(a, b, text))
    (ka, ta), (kb, tb) = a, b
    if ka in ("int", "bool") and kb in ("int", "bool"):
        x, y = _as_int(a), _as_int(b)
    elif ka == kb == "str":
        x, y = ta, tb
        if isinstance(op, ast.Lt):
            return z3.StrLT(x, y) if hasattr(z3, "StrLT") else x < y
        if isinstance(op, ast.LtE):
            return z3.StrLE(x, y) if hasattr(z3, "StrLE") else x <= y
        if isinstance(op, ast.Gt):
            return z3.StrLT(y, x) if hasattr(z3, "StrLT") else y < x
        return z3.StrLE(y, x) if hasattr(z3, "StrLE") else y <= x
    else:
        raise Unsupported(f"an ordering of a {ka} and a {kb} in {text!r} (Python raises TypeError)")
    return {ast.Lt: x < y, ast.LtE: x <= y, ast.Gt: x > y, ast.GtE: x >= y}[type(op)]


def _text(f: z3.ExprRef) -> str:
    """A z3 formula in the policy's expression language (facts as r.f.<name>)."""
    if z3.is_true(f):
        return "True"
    if z3.is_false(f):
        return "False"
    if z3.is_const(f) and f.decl().kind() == z3.Z3_OP_UNINTERPRETED:
        return f"r.f.{f.decl().name()}"
    if z3.is_int_value(f):
        return str(f.as_long())
    if z3.is_string_value(f):
        return repr(f.as_string()).replace("'", '"')
    kind, args = f.decl().kind(), f.children()
    if kind == z3.Z3_OP_NOT:
        inner = args[0]
        if z3.is_eq(inner) and not z3.is_bool(inner.arg(0)):
            left, right = _ordered(inner.arg(0), inner.arg(1))
            return f"{_text(left)} != {_text(right)}"
        flipped = {z3.Z3_OP_LE: ">", z3.Z3_OP_LT: ">=", z3.Z3_OP_GE: "<", z3.Z3_OP_GT: "<="}
        if inner.decl().kind() in flipped:
            return f"{_text(inner.arg(0))} {flipped[inner.decl().kind()]} {_text(inner.arg(1))}"
        if z3.is_const(inner):
            return f"not {_text(inner)}"
        return f"not ({_text(inner)})"
    if kind in (z3.Z3_OP_AND, z3.Z3_OP_OR):
        joiner = " and " if kind == z3.Z3_OP_AND else " or "
        parts = _eq_groups(args) if kind == z3.Z3_OP_OR else [_text(a) for a in args]
        wrapped = [f"({p})" if (" or " in p and kind == z3.Z3_OP_AND) else p for p in parts]
        return joiner.join(wrapped)
    ops = {z3.Z3_OP_EQ: "==", z3.Z3_OP_LE: "<=", z3.Z3_OP_GE: ">=", z3.Z3_OP_LT: "<", z3.Z3_OP_GT: ">"}
    if kind in ops:
        left, right = _ordered(args[0], args[1]) if kind == z3.Z3_OP_EQ else (args[0], args[1])
        return f"{_text(left)} {ops[kind]} {_text(right)}"
    if kind == z3.Z3_OP_DISTINCT:
        return f"{_text(args[0])} != {_text(args[1])}"
    if kind == z3.Z3_OP_IMPLIES:
        return f"not ({_text(args[0])}) or {_text(args[1])}"
    return str(f)


def _ordered(a, b):
    """(fact, value) rather than (value, fact), as a policy author writes a comparison."""
    return (b, a) if z3.is_const(b) and b.decl().kind() == z3.Z3_OP_UNINTERPRETED and not (
        z3.is_const(a) and a.decl().kind() == z3.Z3_OP_UNINTERPRETED) else (a, b)


def _eq_groups(args) -> list[str]:
    """The disjuncts of an or, with ``x == a or x == b`` written ``x in ("a", "b")``."""
    groups: dict[str, list[str]] = {}
    rest = []
    for a in args:
        fact, value = _ordered(a.arg(0), a.arg(1)) if z3.is_eq(a) else (None, None)
        if fact is not None and z3.is_const(fact) and not z3.is_bool(fact) and (
                z3.is_string_value(value) or z3.is_int_value(value)):
            groups.setdefault(_text(fact), []).append(_text(value))
        else:
            rest.append(_text(a))
    out = [f"{k} == {v[0]}" if len(v) == 1 else f"{k} in ({', '.join(v)})" for k, v in groups.items()]
    return out + rest

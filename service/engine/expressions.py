"""Policy expressions compiled once to Python code, restricted to a safe subset.

pycasbin evaluates matchers with simpleeval, an interpreter that walks the syntax tree on
every call. The same expressions, checked here against the subset simpleeval accepts
(comparisons, boolean logic, literals, attribute reads, registered functions), are
compiled to a code object once and then run by CPython itself: the answers are the same,
the cost a fraction.
"""

from __future__ import annotations

import ast
import threading

_ALLOWED = (
    ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.Compare,
    ast.Eq, ast.NotEq, ast.In, ast.NotIn, ast.Lt, ast.LtE, ast.Gt, ast.GtE,
    ast.Name, ast.Load, ast.Attribute, ast.Constant, ast.Tuple, ast.List, ast.Call,
)


class ExpressionError(ValueError):
    pass


# One AST at a time: CPython 3.11 keeps the AST constructor's recursion depth in state that
# all threads share, so two threads parsing at once can fail with "SystemError: AST
# constructor recursion depth mismatch" (python/cpython#106905). The benchmark met it: the
# first requests of a worker's threads each parse the matchers they use. Parsing is rare
# (once per expression and thread), so the lock costs nothing after the start.
PARSING = threading.RLock()


def comparisons(condition: str):
    """For each comparison in ``condition``: the facts it compares (``r.f.<name>`` as
    ``<name>``) and the literal values it compares them with. The policy tools split each
    fact's domain at these values (the check's search, the solver's string domains)."""
    for node in ast.walk(ast.parse(condition.strip(), mode="eval")):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        facts = [text[4:] for text in (ast.unparse(o) for o in operands if isinstance(o, ast.Attribute))
                 if text.startswith("r.f.")]
        literals = []
        for o in operands:
            if isinstance(o, ast.Constant):
                literals.append(o.value)
            elif isinstance(o, (ast.Tuple, ast.List)):
                literals += [e.value for e in o.elts if isinstance(e, ast.Constant)]
        yield facts, literals


def names_in(expr: str) -> set[str]:
    """The dotted names an expression reads, e.g. {'r.f.same_bc', 'p.rel'}."""
    found = set()
    with PARSING:
        tree = ast.parse(expr.strip(), mode="eval")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            parts, inner = [node.attr], node.value
            while isinstance(inner, ast.Attribute):
                parts.append(inner.attr)
                inner = inner.value
            if isinstance(inner, ast.Name):
                found.add(".".join([inner.id, *reversed(parts)]))
    return {n for n in found if not any(o != n and o.startswith(n + ".") for o in found)}


class Compiled:
    """A checked, compiled expression; ``eval(names)`` mirrors simpleeval's interface."""

    __slots__ = ("expr", "_code", "_globals")

    def __init__(self, expr: str, functions: dict | None = None):
        functions = functions or {}
        try:
            with PARSING:
                tree = ast.parse(expr.strip(), mode="eval")
        except SyntaxError as exc:
            raise ExpressionError(f"syntax error in {expr!r}: {exc.msg}") from None
        for node in ast.walk(tree):
            if not isinstance(node, _ALLOWED):
                raise ExpressionError(f"{type(node).__name__} is not allowed in {expr!r}")
            if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
                raise ExpressionError(f"private attribute {node.attr!r} in {expr!r}")
            if isinstance(node, ast.Call) and not (
                isinstance(node.func, ast.Name) and node.func.id in functions
            ):
                raise ExpressionError(f"only registered functions may be called in {expr!r}")
        self.expr = expr
        with PARSING:
            self._code = compile(tree, "<policy>", "eval")
        self._globals = {"__builtins__": {}, "True": True, "False": False, **functions}

    def eval(self, names=None):
        return eval(self._code, self._globals, names or {})  # noqa: S307 - checked above

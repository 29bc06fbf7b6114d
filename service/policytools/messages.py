"""What the policy tools tell an author, in the policy's own terms.

An author writes policy.csv, facts.yaml and reasons.yaml, not Python: a message names the
file, line and column, says what was expected in those files' words (a fact, an action, a
reason code, ``True``/``False``, ``and``/``or``/``not``), and offers "did you mean" for a
misspelt name. Python's own wording (``NameError``, ``invalid syntax``) never reaches the
author.
"""

from __future__ import annotations

import ast
import difflib
import re
from pathlib import Path

from audience_authz.contract import FACTS as GATHERED_FACTS  # the one list of gathered facts
from audience_authz.engine.context import CONTEXT, SOURCES
from audience_authz.engine.expressions import Compiled, ExpressionError, names_in
from audience_authz.vocabulary import FACT_TYPES

FACT_KEYS = ("type", "default", "doc", "invariant", "source", "required")


def did_you_mean(name: str, known, *, prefix: str = "") -> str:
    """``"; did you mean 'x'?"`` for the closest of ``known`` to ``name``, else ``""``."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    if not close and name.lower() in {str(k).lower() for k in known}:
        close = [next(k for k in known if str(k).lower() == name.lower())]
    return f"; did you mean {prefix}{close[0]}?" if close else ""


def article(word: str) -> str:
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"


def fact_spec_problems(name: str, spec: dict) -> list[str]:
    """What is wrong with one fact of facts.yaml (a mapping), in facts.yaml's terms."""
    found = []
    for key in spec:
        if key not in FACT_KEYS:
            found.append(f"fact {name!r}: unknown key {key!r}{did_you_mean(str(key), FACT_KEYS)}"
                         f" (a fact has {', '.join(FACT_KEYS)})")
    source = spec.get("source", "service")
    if source not in SOURCES:
        found.append(f"fact {name!r}: source must be service (gathered from the database) or context"
                     f" (sent by the caller), not {source!r}")
        return found
    required = spec.get("required", False)
    if required not in (True, False):
        found.append(f"fact {name!r}: required must be true or false, not {required!r}")
    elif required and source != CONTEXT:
        found.append(f"fact {name!r}: only a fact with source: context can be required (the service"
                     " gathers every other fact for every request)")
    if source == CONTEXT and name in GATHERED_FACTS:
        found.append(context_named_like_gathered(name))
    elif source == CONTEXT and "invariant" in spec:
        found.append(f"fact {name!r}: a context fact has no invariant: the caller may send any"
                     f" {spec.get('type')} (the service guarantees invariants only of what it gathers)")
    # a service fact the code never gathers: contract_problems (check.py) says so, with this advice
    kind = FACT_TYPES.get(spec.get("type"))
    if kind is None:
        found.append(f"fact {name!r}: type must be one of bool, int, str, not {spec.get('type')!r}"
                     + did_you_mean(str(spec.get("type")), FACT_TYPES))
    elif required is True:
        if "default" in spec:
            found.append(f"fact {name!r}: a required fact has no default (a request without it is refused"
                         " with 400 missing_context_fact); remove the default or required: true")
    elif "default" not in spec or type(spec["default"]) is not kind:  # noqa: E721 - exact type
        found.append(f"fact {name!r}: default must be {article(kind.__name__)},"
                     f" not {spec.get('default')!r}" + yaml_value_hint(kind, spec.get("default")))
    return found


def context_named_like_gathered(name: str) -> str:
    return (f"fact {name!r} is gathered by the service from its database; it cannot be"
            " source: context (a caller could then override it)")


def never_gathered(name: str) -> str:
    """A fact declared as gathered (no ``source: context``) that contract.FACTS lacks."""
    return (f"fact {name!r} is declared but the service never gathers it (contract.FACTS): every decision"
            " would see its default; declare source: context if the caller sends it with the request,"
            " or ask a developer to gather it" + did_you_mean(name, GATHERED_FACTS))


def invariant_problems(invariant, facts) -> list[str]:
    """Why an ``invariant`` (an expression, or a list of them, over the facts) is unusable."""
    if invariant is None:
        return []
    texts = [invariant] if isinstance(invariant, str) else invariant
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        return ["invariant must be an expression over the facts, or a list of them"]
    found = []
    for text in texts:
        try:
            Compiled(text)
        except (ExpressionError, SyntaxError) as exc:
            found.append(f"bad invariant: {exc}")
            continue
        for read in sorted(names_in(text)):
            if not read.startswith("r.f.") or read[4:] not in facts:
                found.append(f"invariant reads {read!r}, which is not a fact in facts.yaml"
                             + did_you_mean(read.rsplit(".", 1)[-1], facts, prefix="r.f."))
    return found


def yaml_value_hint(kind: type, value) -> str:
    """Why a YAML default is not of the declared type, when it looks like one."""
    if kind is bool and isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
        return " (write true or false without quotes)"
    if kind is str and isinstance(value, (bool, int)):
        return f" (quote it: \"{str(value).lower() if isinstance(value, bool) else value}\")"
    if kind is int and isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return f" (write {value.strip()} without quotes)"
    return ""


def policy_condition_problems(policy) -> list[Problem]:
    """The problems of every condition of a loaded policy (what ``policy check`` reports
    first), for tools that run the policy without checking it, such as ``policy test``."""
    texts = (Path(policy.directory) / "policy.csv").read_text().splitlines()
    return [Problem("policy.csv", rule.line, message, column) for rule in policy.rules
            for column, message in condition_problems(policy.facts_schema, rule.cond, texts[rule.line - 1])]


# -- where: file, line and column ----------------------------------------------------------

class Problem(tuple):
    """``(file, line, message)`` as every consumer unpacks it, with the ``column`` (1-based)
    where the problem is; ``str()`` is ``file:line:column: message``."""

    def __new__(cls, file: str, line: int, message: str, column: int = 1):
        self = super().__new__(cls, (file, line, message))
        self.column = column
        return self

    def __getnewargs__(self):  # pickled whole: problems come back from analysis processes
        return (*self, self.column)

    def __str__(self) -> str:
        file, line, message = self
        return f"{file}:{line}:{self.column}: {message}"


# policy.csv is read after the files it names things from: its problems come last
_FILE_ORDER = ("model.conf", "facts.yaml", "reasons.yaml", "policy.csv")
# problems found by the search over the facts: they follow from a line's own problems
_DERIVED = ("never decides", "no line decides", "the enforcer decides")


def located(directory, problems) -> list[Problem]:
    """Each problem with a real line (a file-wide one is on line 1) and a column, causes
    before what the search derived from them, in the order an author reads the files."""
    texts: dict[str, list[str]] = {}

    def lines_of(name: str) -> list[str]:
        if name not in texts:
            try:
                texts[name] = (Path(directory) / name).read_text().splitlines()
            except OSError:
                texts[name] = []
        return texts[name]

    out = []
    for problem in problems:
        file, line, message = problem
        column = getattr(problem, "column", None)
        line = line or 1
        if column is None:
            source = lines_of(file)
            text = source[line - 1] if 0 < line <= len(source) else ""
            message, column = _fields_message(message, text)
            column = column or _column_of(message, text)
        out.append(Problem(file, line, message, column))
    rank = {name: i for i, name in enumerate(_FILE_ORDER)}
    return sorted(out, key=lambda p: (rank.get(p[0], len(rank)), p[2].startswith(_DERIVED), p[1], p.column))


def _fields_message(message: str, text: str) -> tuple[str, int | None]:
    """A policy.csv line of the wrong number of columns, said with its likely cause: a bracket
    left open makes Casbin read the commas after it as part of one column."""
    found = re.fullmatch(r"expected 6 fields, found (\d+)", message)
    if not found:
        return message, None
    columns = "expected 6 columns (rel, act, cond, eft, reason, effects)"
    opened = []
    for at, char in enumerate(text):
        if char in "([{":
            opened.append((at, char))
        elif char in ")]}" and opened:
            opened.pop()
    if opened:
        at, char = opened[0]
        return (f"'{char}' is never closed, so the commas after it do not separate columns: {columns},"
                f" found {found.group(1)}"), at + 1
    return f"{columns}, found {found.group(1)}", None


def _column_of(message: str, text: str) -> int:
    """The column of the first name the message quotes that the line holds (of the bracket
    that closes nothing, for unbalanced brackets); else where the line's text starts."""
    if message.startswith("unbalanced"):
        depth = 0
        for at, char in enumerate(text):
            depth += char in "([{"
            depth -= char in ")]}"
            if depth < 0:
                return at + 1
    body = text.split(",", 1)[1] if text.lstrip().startswith("p,") else text
    offset = len(text) - len(body)
    for quoted in re.findall(r"'([^']+)'", message):
        at = body.find(quoted)
        if at >= 0:
            return offset + at + 1
    return len(text) - len(text.lstrip()) + 1


# -- conditions --------------------------------------------------------------------------------

_COMPARISONS = "==, !=, <, <=, >, >=, in, not in"
_LANGUAGE = f"a condition compares facts r.f.<name> with values ({_COMPARISONS}) and joins them with and, or, not"
_OPERATORS = {"&&": "and", "||": "or"}
_ALLOWED_NODES = (ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.Compare,
                  ast.Eq, ast.NotEq, ast.In, ast.NotIn, ast.Lt, ast.LtE, ast.Gt, ast.GtE,
                  ast.Name, ast.Load, ast.Attribute, ast.Constant, ast.Tuple, ast.List)
_LITERAL_NAMES = {"true": "True", "false": "False", "TRUE": "True", "FALSE": "False"}
_PYTHON_WORDS = {
    "invalid syntax": "this does not read as a condition",
    "invalid syntax. Perhaps you forgot a comma?": "two values follow each other without an operator between them",
    "unexpected EOF while parsing": "the condition ends too early",
}


def _kind_of(value) -> str:
    if isinstance(value, bool):
        return "True or False"
    if isinstance(value, int):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return type(value).__name__


def _fact_kind(spec) -> type | None:
    return FACT_TYPES.get(spec.get("type", "str")) if isinstance(spec, dict) else None


def condition_problems(facts_schema: dict, cond: str, line_text: str) -> list[tuple[int, str]]:
    """(column in ``line_text``, message) for each problem of a policy line's condition, in
    the condition language's terms; empty when it is sound."""
    stripped = cond.strip()
    start = line_text.find(stripped)
    base = start + 1 if start >= 0 else 1  # column of the condition's first character

    found = []
    for symbol, word in _OPERATORS.items():
        at = stripped.find(symbol)
        if at >= 0:
            found.append((base + at, f"'{symbol}' in the condition: write {word} ({_LANGUAGE})"))
    for match in re.finditer(r"(?<![=!<>])=(?!=)", _without_strings(stripped)):
        found.append((base + match.start(), "'=' in the condition: to compare, write '=='"))
    for match in re.finditer(r"!(?!=)", _without_strings(stripped)):
        found.append((base + match.start(), "'!' in the condition: write not"))
    if found:
        return found
    try:
        tree = ast.parse(stripped, mode="eval")
    except SyntaxError as exc:
        column = base + max((exc.offset or 1) - 1, 0)
        what = _PYTHON_WORDS.get(exc.msg, exc.msg)
        near = stripped[max((exc.offset or 1) - 1, 0):][:20]
        return [(column, f"{what} at column {column}{f' (near {near!r})' if near else ''}: {_LANGUAGE}")]

    roots, inner_parts = set(), set()  # the Name at the start of each dotted name; its inner parts
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            if isinstance(node.value, ast.Attribute):
                inner_parts.add(id(node.value))
            inner = node.value
            while isinstance(inner, ast.Attribute):
                inner = inner.value
            roots.add(id(inner))
    facts = list(facts_schema)
    for node in ast.walk(tree):
        column = base + getattr(node, "col_offset", 0)
        if isinstance(node, (ast.operator, ast.unaryop, ast.cmpop, ast.boolop, ast.expr_context)) and \
                not isinstance(node, _ALLOWED_NODES):
            continue  # reported with the expression it is the operator of
        if not isinstance(node, _ALLOWED_NODES):
            text = ast.get_source_segment(stripped, node) or type(node).__name__
            found.append((column, f"{text!r} is not part of the condition language: {_LANGUAGE}"))
        elif isinstance(node, ast.UnaryOp) and not isinstance(node.op, ast.Not):
            found.append((column, f"{ast.get_source_segment(stripped, node)!r} is not part of the condition"
                          f" language: {_LANGUAGE}"))
        elif isinstance(node, ast.Name) and id(node) not in roots and node.id not in ("True", "False"):
            found.append((column, _unknown_name(node.id, facts)))
        elif isinstance(node, ast.Attribute) and id(node) not in inner_parts:
            dotted = ast.get_source_segment(stripped, node) or ""
            problem = _dotted_problem(dotted, facts)
            if problem:
                found.append((column, problem))
        elif isinstance(node, ast.Compare):
            found += [(base + c, m) for c, m in _type_problems(node, facts_schema)]
    return _outermost(found)


def _without_strings(text: str) -> str:
    """``text`` with the inside of its string literals blanked, so '=' in "a=b" is no operator."""
    return re.sub(r"(\"[^\"]*\"|'[^']*')", lambda m: m.group(0)[0] + " " * (len(m.group(0)) - 2) + m.group(0)[-1], text)


def _outermost(found: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """One message per place (a dotted name is met once per level of it)."""
    seen, out = set(), []
    for column, message in found:
        if (column, message) not in seen:
            seen.add((column, message))
            out.append((column, message))
    return out


def _unknown_name(name: str, facts: list[str]) -> str:
    if name in _LITERAL_NAMES:
        return f"unknown name {name!r} in the condition: did you mean {_LITERAL_NAMES[name]}?"
    if name.lower() in ("none", "null", "nil"):
        return f"there is no {name} in a condition: compare with \"\" (no text), 0 or False"
    if name in facts:
        return f"unknown name {name!r} in the condition: did you mean r.f.{name}?"
    hint = (did_you_mean(name, facts, prefix="r.f.") or did_you_mean(name, ["True", "False"])
            or f'; did you mean "{name}" (a string, in quotes)?')
    return (f"unknown name {name!r} in the condition{hint}"
            f" (a condition reads facts as r.f.<name>, and the values True, False, numbers and \"strings\")")


def _dotted_problem(dotted: str, facts: list[str]) -> str | None:
    parts = dotted.split(".")
    if parts[:2] == ["r", "f"] and len(parts) == 3:
        if parts[2] in facts:
            return None
        return (f"unknown fact {parts[2]!r} (r.f.{parts[2]}): facts.yaml does not declare it"
                + did_you_mean(parts[2], facts))
    if parts[0] == "r" and len(parts) >= 2 and parts[1] != "f" and len(parts) == 2 and parts[1] in facts:
        return f"{dotted!r} in the condition: did you mean r.f.{parts[1]}?"
    if len(parts) >= 2 and parts[0] in ("r", "p") and parts[1] in ("rel", "act", "eft", "reason", "effects", "cond"):
        return (f"the condition reads {dotted!r}: a condition reads only facts (r.f.<name>); the line's"
                " relation and action are its own first two columns")
    last = parts[-1]
    return f"the condition reads {dotted!r}, which is not a fact: facts are read as r.f.<name>" + (
        did_you_mean(last, facts, prefix="r.f.") or "")


def _type_problems(node: ast.Compare, facts_schema: dict) -> list[tuple[int, str]]:
    """A fact compared with a value of another type (which would never be equal, or fail)."""
    operands = [node.left, *node.comparators]
    found = []
    for i, _op in enumerate(node.ops):
        left, right = operands[i], operands[i + 1]
        for fact_node, other in ((left, right), (right, left)):
            name = _fact_name(fact_node)
            kind = _fact_kind(facts_schema.get(name)) if name else None
            if kind is None:
                continue
            values = ([other] if isinstance(other, ast.Constant) else
                      list(other.elts) if isinstance(other, (ast.Tuple, ast.List)) else [])
            for value_node in values:
                if not isinstance(value_node, ast.Constant):
                    continue
                value = value_node.value
                if type(value) is kind:  # noqa: E721 - exact: True is not a number
                    continue
                hint = ""
                if kind is bool and isinstance(value, str) and value.lower() in ("true", "false"):
                    hint = f"; did you mean {value.capitalize()}?"
                elif kind is int and isinstance(value, str) and value.strip().lstrip("-").isdigit():
                    hint = f"; did you mean {value.strip()}?"
                elif kind is str and not isinstance(value, str):
                    hint = f"; did you mean \"{value}\"?"
                found.append((value_node.col_offset, f"compares fact {name!r} ({_kind_of(kind())} in facts.yaml)"
                              f" with {ast.unparse(value_node)} ({_kind_of(value)}), which never matches{hint}"))
    return found


def _fact_name(node) -> str | None:
    if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
            and isinstance(node.value.value, ast.Name) and node.value.value.id == "r" and node.value.attr == "f"):
        return node.attr
    return None

"""Facts supplied by the caller: the ``context`` facts of ``facts.yaml`` (``source: context``).

A policy author can declare a fact that the caller sends with the request instead of one
the service gathers from its database (``engine/facts.py``): on ``POST /v1/authorize`` in
``context.facts``, on the action endpoints in the ``X-Authz-Context`` header. They are
checked here against the policy in force: an undeclared name, a fact the service gathers
itself, a value of the wrong JSON type, or a missing ``required: true`` fact is a 400
naming the fact, never a silent default. A fact that is not required and not sent takes
its declared default, which the decision log then stores like any other fact.

Both ways in (the body and the header; each check of a batch) go through ``supplied``,
which first bounds what any caller may send whatever the policy declares: at most
``MAX_FACTS`` facts, a name of at most ``MAX_NAME`` characters, a value that is a scalar
(true or false, a whole number within a signed 64-bit integer, a string of at most
``MAX_STR`` characters of valid Unicode without NUL or other control characters). A value
past these would otherwise reach the decision log (orjson refuses an integer over 64 bits
and a lone surrogate) or PostgreSQL (which refuses NUL in text) as a 500.
"""

from __future__ import annotations

import difflib
import json
from contextvars import ContextVar
from types import MappingProxyType

from audience_authz.contract import FACTS as GATHERED_FACTS  # the facts engine/facts.py gathers
from audience_authz.exceptions import ApiError
from audience_authz.vocabulary import FACT_TYPES

CONTEXT = "context"  # the facts.yaml ``source`` of a fact the caller supplies
SOURCES = ("service", CONTEXT)
_JSON_TYPES = {bool: "true or false", int: "a whole number", str: "a string"}
MAX_STR = 256
MAX_NAME = 128
MAX_FACTS = 64
MAX_HEADER = 4096  # characters of the X-Authz-Context header
INT_MIN, INT_MAX = -(2**63), 2**63 - 1  # what the decision log (orjson, a JSON column) stores
EMPTY = MappingProxyType({})

# The facts the caller of an action endpoint sent (the X-Authz-Context header), for every
# decision that request makes; set per request by the HTTP layer, None when not sent.
_current: ContextVar[dict | None] = ContextVar("caller_facts", default=None)


def use(values: dict | None):
    """Make ``values`` the caller's facts of this request; returns the token to reset."""
    return _current.set(values)


def reset(token) -> None:
    _current.reset(token)


def current() -> dict | None:
    return _current.get()


def is_context(spec: dict) -> bool:
    return isinstance(spec, dict) and spec.get("source", "service") == CONTEXT


def supplied(policy, given: dict | None) -> dict:
    """The caller's facts, checked against ``policy``'s facts.yaml; ApiError 400 otherwise."""
    required = policy.required_context
    if not given and not required:
        return EMPTY
    given = given or {}
    bounded(given)
    values = {}
    for name, value in given.items():
        spec = policy.facts_schema.get(name)
        if not is_context(spec) or name in GATHERED_FACTS:
            raise ApiError(400, "unknown_context_fact", _unknown(policy, name, name in GATHERED_FACTS))
        kind = FACT_TYPES[spec.get("type", "str")]
        if type(value) is not kind:  # noqa: E721 - exact: true is not a number, 1 is not true
            raise ApiError(400, "invalid_context_fact",
                           f"context fact {name!r} must be {_JSON_TYPES[kind]} (facts.yaml: type {kind.__name__}),"
                           f" not {json.dumps(value)[:80]}")
        values[name] = value
    missing = [name for name in required if name not in values]
    if missing:
        raise ApiError(400, "missing_context_fact",
                       f"context fact {missing[0]!r} is required (facts.yaml: required: true) and was not sent"
                       + (f"; also missing: {', '.join(map(repr, missing[1:]))}" if missing[1:] else ""))
    return values


def _refuse(code: str, message: str):
    raise ApiError(400, code, message)


def _text_problem(text: str, limit: int) -> str | None:
    if len(text) > limit:
        return f"is longer than {limit} characters"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode (a lone surrogate such as \\ud800)"
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        return "holds a control character (NUL, a newline, ...)"
    return None


def bounded(given) -> None:
    """What any caller's facts must be whatever the policy declares (see the module); ApiError 400."""
    if not isinstance(given, dict):
        _refuse("invalid_context", "the caller's facts must be a JSON object of fact names to values")
    if len(given) > MAX_FACTS:
        _refuse("invalid_context", f"at most {MAX_FACTS} context facts may be sent, not {len(given)}")
    for name, value in given.items():
        problem = _text_problem(name, MAX_NAME) if isinstance(name, str) else "is not a string"
        if problem:
            _refuse("invalid_context", f"a context fact's name {problem}")
        problem = None
        if type(value) is str:
            problem = _text_problem(value, MAX_STR)
        elif type(value) is int:
            problem = None if INT_MIN <= value <= INT_MAX else "is outside the signed 64-bit integer range"
        elif type(value) is not bool:
            problem = "must be true or false, a whole number or a string (not a list, an object or null)"
        if problem:
            _refuse("invalid_context_fact", f"context fact {name!r} {problem}")


def _unknown(policy, name: str, gathered: bool) -> str:
    if gathered:
        return (f"fact {name!r} is gathered by the service from its database; a caller cannot send it"
                " (only facts declared with source: context can be sent)")
    known = sorted(n for n, spec in policy.facts_schema.items() if is_context(spec))
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    listed = f" (the policy's context facts: {', '.join(known)})" if known else " (the policy declares none)"
    return f"unknown context fact {name!r}{hint}{listed}"


def from_header(text: str | None) -> dict | None:
    """The X-Authz-Context header: a JSON object of fact names to values; ApiError 400 otherwise."""
    if text is None:
        return None
    if len(text) > MAX_HEADER:
        raise ApiError(400, "invalid_context", f"the X-Authz-Context header is longer than {MAX_HEADER} characters")
    try:
        value = json.loads(text)
    except RecursionError:
        raise ApiError(400, "invalid_context", "the X-Authz-Context header is nested too deeply"
                       " (its facts are true or false, whole numbers or strings)") from None
    except ValueError:
        raise ApiError(400, "invalid_context", "the X-Authz-Context header is not valid JSON"
                       " (expected an object such as {\"principal_suspended\": true})") from None
    if not isinstance(value, dict):
        raise ApiError(400, "invalid_context", "the X-Authz-Context header must be a JSON object of"
                       " fact names to values, e.g. {\"principal_suspended\": true}")
    bounded(value)
    return value

"""Facts supplied by the caller: the ``context`` facts of ``facts.yaml`` (``source: context``).

A policy author can declare a fact that the caller sends with the request instead of one
the service gathers from its database (``engine/facts.py``): on ``POST /v1/authorize`` in
``context.facts``, on the action endpoints in the ``X-Authz-Context`` header. They are
checked here against the policy in force: an undeclared name, a fact the service gathers
itself, a value of the wrong JSON type, or a missing ``required: true`` fact is a 400
naming the fact, never a silent default. A fact that is not required and not sent takes
its declared default, which the decision log then stores like any other fact.
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
        if kind is str and len(value) > MAX_STR:
            raise ApiError(400, "invalid_context_fact", f"context fact {name!r} is longer than {MAX_STR} characters")
        values[name] = value
    missing = [name for name in required if name not in values]
    if missing:
        raise ApiError(400, "missing_context_fact",
                       f"context fact {missing[0]!r} is required (facts.yaml: required: true) and was not sent"
                       + (f"; also missing: {', '.join(map(repr, missing[1:]))}" if missing[1:] else ""))
    return values


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
    try:
        value = json.loads(text)
    except ValueError:
        raise ApiError(400, "invalid_context", "the X-Authz-Context header is not valid JSON"
                       " (expected an object such as {\"principal_suspended\": true})") from None
    if not isinstance(value, dict):
        raise ApiError(400, "invalid_context", "the X-Authz-Context header must be a JSON object of"
                       " fact names to values, e.g. {\"principal_suspended\": true}")
    return value

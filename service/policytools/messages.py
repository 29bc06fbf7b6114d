"""What the policy tools tell an author, in the policy's own terms.

An author writes policy.csv, facts.yaml and reasons.yaml, not Python: a message names the
file, line and column, says what was expected in those files' words (a fact, an action, a
reason code, ``True``/``False``, ``and``/``or``/``not``), and offers "did you mean" for a
misspelt name. Python's own wording (``NameError``, ``invalid syntax``) never reaches the
author.
"""

from __future__ import annotations

import difflib

from audience_authz.engine.context import CONTEXT, SOURCES
from audience_authz.vocabulary import FACT_TYPES, GATHERED_FACTS

FACT_KEYS = ("type", "default", "doc", "source", "required")


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
        found.append(f"fact {name!r} is gathered by the service from its database; it cannot be"
                     " source: context (a caller could then override it)")
    if source != CONTEXT and name not in GATHERED_FACTS:
        found.append(f"fact {name!r}: the service does not gather it, so it would always be its default;"
                     " declare source: context if the caller sends it with the request, or ask a"
                     " developer to gather it" + did_you_mean(name, GATHERED_FACTS, prefix=""))
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
                     f" not {spec.get('default')!r}" + _yaml_hint(kind, spec.get("default")))
    return found


def _yaml_hint(kind: type, value) -> str:
    """Why a YAML default is not of the declared type, when it looks like one."""
    if kind is bool and isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
        return f" (write true or false without quotes)"
    if kind is str and isinstance(value, (bool, int)):
        return f" (quote it: \"{str(value).lower() if isinstance(value, bool) else value}\")"
    return ""

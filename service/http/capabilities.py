"""One table of who may do what, read by both doors: the API's scope check (``auth``)
and the console's (``console/access``). A capability is something a caller can make the
service do; each names the scopes allowed it. The docs' tables (spec.md §4,
console.md, policy-safety.md) are tested against this one.

The rule: reading and deciding (nothing changes) is for every scope; upserting
Business Centers and accounts for ``admin`` and ``full``; anything on the policy itself
(a reload, a shadow set or stopped, a candidate analysed, which reads a directory of the
server or replays the decision log) for ``full`` only, whichever door it comes through.
"""

from __future__ import annotations

SCOPES = ("check", "admin", "full")

# capability -> the scopes allowed it
CAPABILITIES: dict[str, frozenset[str]] = {
    "read": frozenset(SCOPES),
    "decide": frozenset(SCOPES),
    "manage_entities": frozenset({"admin", "full"}),
    "analyse_candidate": frozenset({"full"}),
    "reload_policy": frozenset({"full"}),
    "shadow_policy": frozenset({"full"}),
    "write": frozenset({"full"}),
}

# what each capability means, for the docs' table
DESCRIPTIONS = {
    "read": "every `GET`; the console's pages",
    "decide": "`POST /v1/authorize`, `POST /v1/authorize/batch`; the console's Try",
    "manage_entities": "`PUT /v1/business-centers/{id}`, `PUT /v1/accounts/{id}`",
    "analyse_candidate": "`POST /v1/policy/diff`; the console's Candidate analysis (uploaded files or a directory)",
    "reload_policy": "`POST /v1/policy/reload`; the console's Reload",
    "shadow_policy": "`PUT` / `DELETE /v1/policy/shadow`; the console's Load as shadow / Stop shadow",
    "write": "every other endpoint (the actions, and any endpoint added later)",
}

# (method, Flask route) of the API -> its capability; a GET not listed is "read", anything
# else not listed "write"
API_ROUTES: dict[tuple[str, str], str] = {
    ("POST", "/v1/authorize"): "decide",
    ("POST", "/v1/authorize/batch"): "decide",
    ("PUT", "/v1/business-centers/<id>"): "manage_entities",
    ("PUT", "/v1/accounts/<id>"): "manage_entities",
    ("POST", "/v1/policy/diff"): "analyse_candidate",
    ("POST", "/v1/policy/reload"): "reload_policy",
    ("PUT", "/v1/policy/shadow"): "shadow_policy",
    ("DELETE", "/v1/policy/shadow"): "shadow_policy",
}

_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def allows(scope: str | None, capability: str) -> bool:
    """May a caller of ``scope`` do ``capability``? (an unknown capability: nobody)."""
    return scope in CAPABILITIES.get(capability, ())


def of_route(method: str, route: str) -> str:
    """The capability an API call needs."""
    found = API_ROUTES.get((method, route))
    if found is not None:
        return found
    return "read" if method in _READ_METHODS else "write"


def markdown_table() -> str:
    """The table the docs hold (a test compares them)."""
    lines = ["| capability | check | admin | full | what |", "| --- | --- | --- | --- | --- |"]
    for name, scopes in CAPABILITIES.items():
        marks = " | ".join("yes" if s in scopes else "no" for s in SCOPES)
        lines.append(f"| `{name}` | {marks} | {DESCRIPTIONS[name]} |")
    return "\n".join(lines)

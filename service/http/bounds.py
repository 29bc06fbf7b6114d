"""Every answer within the response size limit (``AUDIENCE_AUTHZ_MAX_RESPONSE``), and never
an error after a commit.

An answer over the limit is cut to fit, not refused:

* a page (a list with a ``next_after`` cursor: audiences, shares, events, decisions, the
  share log) keeps its longest head that fits, and ``next_after`` continues after it;
* the answer of an action or a decision (a change already committed, or its preview) keeps
  its fields and summary, and empties its lists (and those of the objects it holds, such
  as ``ad_group.include``), largest first, until it fits; ``truncated`` names the lists
  emptied. The summary says what they held: ``effect_counts`` (effects by
  type) and ``events`` (first and last id of the action's events: ``GET
  /v1/events?after=<first_id - 1>`` reads them). Without its lists an answer is a few
  hundred bytes of ids and counts, so it is sent even past a very small limit: a change
  that committed is never answered with an error.

Only a read that cannot fit (one entry of a page over the limit, or a batch whose results
alone pass it) answers ``response_too_large``; it changed nothing.
"""

from __future__ import annotations

import logging

from flask import Flask, current_app, request

log = logging.getLogger("audience_authz")

# list field of a page -> the key of its entries that the cursor next_after takes
PAGED = {"audiences": "id", "shares": "account_id", "events": "id", "decisions": "id", "entries": "id"}
READS = {"GET", "HEAD", "OPTIONS"}


def _size(body) -> int:
    return len(current_app.json.dumps(body))


def _page(body: dict, field: str, limit: int) -> dict | None:
    items = body[field]
    if not items:
        return None
    key = PAGED[field]

    def head(n: int) -> dict:
        return {**body, field: items[:n], "next_after": items[n - 1][key]}

    if _size(head(1)) > limit:
        return None
    low, high = 1, len(items) - 1  # the whole page did not fit; the longest head that does
    while low < high:
        middle = (low + high + 1) // 2
        if _size(head(middle)) <= limit:
            low = middle
        else:
            high = middle - 1
    return head(low)


def _without_lists(body: dict, limit: int) -> dict:
    """The answer with its lists (and those of the objects in it, e.g. an ad group's
    include and exclude) emptied, largest first, until it fits (or none is left)."""
    cut = {k: dict(v) if isinstance(v, dict) else v for k, v in body.items()}
    truncated = list(cut.get("truncated", []))
    found = [((k,), v) for k, v in cut.items() if isinstance(v, list) and v and k != "truncated"]
    found += [((k, inner), v) for k, obj in cut.items() if isinstance(obj, dict)
              for inner, v in obj.items() if isinstance(v, list) and v]
    for where, _value in sorted(found, key=lambda item: _size(item[1]), reverse=True):
        if _size(cut) <= limit:
            break
        holder = cut if len(where) == 1 else cut[where[0]]
        holder[where[-1]] = []
        truncated.append(".".join(where))
    cut["truncated"] = truncated
    return cut


def fit(body, limit: int, *, read: bool):
    """``body`` cut to ``limit`` bytes, or None when it cannot be (see the module)."""
    if not isinstance(body, dict):
        return None
    paged = next((f for f in PAGED if isinstance(body.get(f), list) and "next_after" in body), None)
    if paged is not None:
        return _page(body, paged, limit)
    if isinstance(body.get("results"), list):  # a batch of decisions: cut each one's effects
        cut = {**body, "results": [_without_lists_named(r, "effects") for r in body["results"]]}
        return cut if _size(cut) <= limit else None
    if read:
        return None
    return _without_lists(body, limit)


def _without_lists_named(result, name: str):
    if isinstance(result, dict) and result.get(name):
        return {**result, name: [], "truncated": [*result.get("truncated", []), name]}
    return result


def oversize(response) -> bool:
    return not response.is_streamed and (response.content_length or 0) > current_app.config["MAX_RESPONSE_BYTES"]


def fitted(response):
    """``response`` cut to the limit in place; None when it cannot be."""
    limit = current_app.config["MAX_RESPONSE_BYTES"]
    body = fit(response.get_json(silent=True), limit, read=request.method in READS)
    if body is None:
        return None
    log.warning("answer of %s %s cut to the response size limit (%d bytes, limit %d)",
                request.method, request.path, response.content_length, limit)
    response.set_data(current_app.json.dumps(body))
    return response


def register(app: Flask, refuse) -> None:
    """Cut every oversize answer to fit; ``refuse(response)`` answers one that cannot be.
    Registered after every other after_request hook, so it runs first (Flask runs them in
    reverse) and the access log and metrics see the status actually sent."""

    @app.after_request
    def limit_response(response):
        if not oversize(response):
            return response
        return fitted(response) or refuse(response)

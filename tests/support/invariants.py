"""The invariants of the store, checked straight from the database: one function that every
reliability test calls after it has done its worst.

``check_invariants(database_url, api=None, consumed=None)`` returns the violations found
(empty when all hold). What may be applied is decided by asking the real policy
(``audience_authz.engine.facts.gather`` + ``Policy.decide``), so the check follows the same rules as the
service; the rest is plain SQL over the tables.

The events feed: ids come from a sequence (PostgreSQL) or rowid (SQLite), so an id can be
missing for good when the transaction that drew it rolled back. "No gaps" therefore
means what a feed reader needs: paging ``GET /v1/events?after=N`` returns every stored
event exactly once, in increasing id order (checked when ``api`` is given), and a reader
that paged *while* the writers ran (``consumed``: the ids it received, in order) saw each
event once and missed none.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections import Counter, defaultdict

from audience_authz.engine.facts import Request, gather
from audience_authz.engine.policy import Policy
from audience_authz.store import db
from audience_authz.store.models import database
from tests.support.live import FIXTURE_POLICY

_POLICY = None


def _policy() -> Policy:
    global _POLICY
    if _POLICY is None:
        _POLICY = Policy.load(FIXTURE_POLICY)  # the policy the tests' servers serve
    return _POLICY


@contextlib.contextmanager
def bound(database_url: str):
    """The service's models bound to ``database_url`` in this (test) process; afterwards
    bound again to what they were bound to before (an in-process app's database)."""
    previous = database.obj
    own = db.init(database_url, create=False)
    try:
        database.connect(reuse_if_open=True)
        yield database
    finally:
        database.initialize(own)  # an in-process request in the block binds the app's again
        db.close()
        if previous is not None:
            database.initialize(previous)


def _rows(sql: str, params=()) -> list[tuple]:
    return list(database.execute_sql(sql.replace("?", database.obj.param), params))


def check_invariants(database_url: str, api=None, consumed: list[int] | None = None) -> list[str]:
    with bound(database_url):
        problems = (_targeting() + _shares() + _deleted() + _share_events() + _audience_events()
                    + _ad_group_events() + _event_decisions())
        problems += _feed(api, consumed)
    return problems


# -- what may be where --------------------------------------------------------------------

def _targeting() -> list[str]:
    """No ad group includes or excludes an audience its account may not apply."""
    policy, found = _policy(), []
    for ad_group_id, account_id, audience_id, mode in _rows(
            "SELECT g.id, g.account_id, t.audience_id, t.mode FROM ad_group_audience t"
            " JOIN ad_group g ON g.id = t.ad_group_id ORDER BY g.id, t.audience_id"):
        gathered = gather(policy, Request(account_id, "apply", audience_id, ad_group_id=ad_group_id))
        decision = policy.decide(gathered.relation, "apply", gathered.facts)
        if not decision.allowed:
            found.append(f"ad group {ad_group_id} of {account_id} {mode}s {audience_id}, which it may not "
                         f"apply ({decision.reason})")
    return found


def _shares() -> list[str]:
    """Every active share is one the owner could make now (the sharing scope: both accounts
    in a BC, the same BC or an allowlisted owner BC; a shareable, active audience), and no
    pair has two active shares."""
    policy, found = _policy(), []
    for audience_id, recipient, owner in _rows(
            "SELECT s.audience_id, s.recipient_account_id, a.owner_account_id FROM audience_share s"
            " JOIN audience a ON a.id = s.audience_id WHERE s.status = 'active'"):
        gathered = gather(policy, Request(owner, "share", audience_id, target_account_id=recipient))
        # the share exists already; ask whether it could be made if it did not
        facts = dataclasses.replace(gathered.facts, target_has_share=False)
        decision = policy.decide(gathered.relation, "share", facts)
        if not decision.allowed:
            found.append(f"active share of {audience_id} to {recipient} breaks the sharing rules "
                         f"({decision.reason})")
    for audience_id, recipient, n in _rows(
            "SELECT audience_id, recipient_account_id, COUNT(*) FROM audience_share WHERE status = 'active'"
            " GROUP BY audience_id, recipient_account_id HAVING COUNT(*) > 1"):
        found.append(f"{n} active shares of {audience_id} to {recipient}")
    return found


def _deleted() -> list[str]:
    """No deleted audience is referenced by an ad group or actively shared."""
    found = [f"ad group {g} targets deleted audience {a}" for g, a in _rows(
        "SELECT t.ad_group_id, t.audience_id FROM ad_group_audience t"
        " JOIN audience a ON a.id = t.audience_id WHERE a.status = 'deleted'")]
    found += [f"deleted audience {a} is still shared with {r}" for a, r in _rows(
        "SELECT s.audience_id, s.recipient_account_id FROM audience_share s"
        " JOIN audience a ON a.id = s.audience_id WHERE a.status = 'deleted' AND s.status = 'active'")]
    return found


# -- every applied change has its events and decisions ------------------------------------

def _share_events() -> list[str]:
    """Each share row has its share_created event, each stopped one its end_share event."""
    made, stopped = Counter(), Counter()
    for audience_id, recipient, status in _rows(
            "SELECT audience_id, recipient_account_id, status FROM audience_share"):
        made[audience_id, recipient] += 1
        stopped[audience_id, recipient] += status == "stopped"
    created_events, end_events = Counter(), Counter()
    for type_, audience_id, account_id in _rows(
            "SELECT type, audience_id, account_id FROM event WHERE type IN ('share_created', 'end_share')"):
        (created_events if type_ == "share_created" else end_events)[audience_id, account_id] += 1
    found = []
    for pair in set(made) | set(created_events):
        if made[pair] != created_events[pair]:
            found.append(f"share {pair}: {made[pair]} share rows but {created_events[pair]} share_created events")
    for pair in set(stopped) | set(end_events):
        if stopped[pair] != end_events[pair]:
            found.append(f"share {pair}: {stopped[pair]} stopped rows but {end_events[pair]} end_share events")
    return found


def _audience_events() -> list[str]:
    """Each audience has one creation event, one audience_deleted event if deleted, and
    one update event per revision after the first."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for type_, audience_id in _rows(
            "SELECT type, audience_id FROM event WHERE type IN ('audience_created', 'lookalike_created',"
            " 'audience_deleted', 'audience_updated', 'lookalike_refreshed')"):
        counts[audience_id][type_] += 1
    found = []
    for audience_id, status, revision in _rows("SELECT id, status, revision FROM audience"):
        c = counts.get(audience_id, Counter())
        if c["audience_created"] + c["lookalike_created"] != 1:
            found.append(f"audience {audience_id} has {c['audience_created'] + c['lookalike_created']} creation events")
        if c["audience_deleted"] != (status == "deleted"):
            found.append(f"audience {audience_id} is {status} with {c['audience_deleted']} audience_deleted events")
        if revision != 1 + c["audience_updated"] + c["lookalike_refreshed"]:
            found.append(f"audience {audience_id} is at revision {revision} after "
                         f"{c['audience_updated'] + c['lookalike_refreshed']} update events")
    return found


def _ad_group_events() -> list[str]:
    """Replaying the feed gives each ad group's targeting: the last ad_group_upserted
    (include, exclude) or disconnect_audience (after) event of a group is what it holds."""
    last: dict[str, dict] = {}
    for type_, payload in _rows("SELECT type, payload FROM event"
                                " WHERE type IN ('ad_group_upserted', 'disconnect_audience') ORDER BY id"):
        data = json.loads(payload)
        state = data["after"] if type_ == "disconnect_audience" else data
        last[data["ad_group_id"]] = {"include": list(state["include"]), "exclude": list(state["exclude"])}
    actual: dict[str, dict] = {g: {"include": [], "exclude": []} for (g,) in _rows("SELECT id FROM ad_group")}
    for ad_group_id, audience_id, mode in _rows(
            "SELECT ad_group_id, audience_id, mode FROM ad_group_audience ORDER BY ad_group_id, mode, position"):
        actual[ad_group_id][mode].append(audience_id)
    found = []
    for ad_group_id, targeting in actual.items():
        if ad_group_id not in last:
            found.append(f"ad group {ad_group_id} has no ad_group_upserted event")
        elif last[ad_group_id] != targeting:
            found.append(f"ad group {ad_group_id} targets {targeting} but its events say {last[ad_group_id]}")
    return found


def _event_decisions() -> list[str]:
    """Every event a decision led to names a logged allow decision."""
    return [f"event {i} ({t}) names decision {d}, which the decision log "
            f"{'holds as ' + str(dec) if dec else 'lacks'}"
            for i, t, d, dec in _rows(
                "SELECT e.id, e.type, e.decision_id, l.decision FROM event e"
                " LEFT JOIN decision_log l ON l.decision_id = e.decision_id"
                " WHERE e.decision_id IS NOT NULL AND (l.decision IS NULL OR l.decision != 'allow')")]


# -- the feed ------------------------------------------------------------------------------

def _feed(api, consumed: list[int] | None) -> list[str]:
    stored = [i for (i,) in _rows("SELECT id FROM event ORDER BY id")]
    found = []
    if api is not None:
        paged, after = [], 0
        while True:
            page = api.get(f"/v1/events?after={after}&limit=1000")
            if page.status != 200:
                return [f"GET /v1/events?after={after} answered {page.status}: {page.body}"]
            ids = [e["id"] for e in page.body["events"]]
            if not ids:
                break
            paged += ids
            after = page.body["next_after"]
        found += _same_feed("paging GET /v1/events", paged, stored)
    if consumed is not None:
        # a reader that ran alongside the writers: every event up to the last it saw, once
        seen_up_to = [i for i in stored if consumed and i <= consumed[-1]]
        found += _same_feed("a reader paging during the run", consumed, seen_up_to)
    return found


def _same_feed(who: str, got: list[int], stored: list[int]) -> list[str]:
    found = []
    if any(b <= a for a, b in zip(got, got[1:])):
        found.append(f"{who} received ids out of order or twice")
    dupes = [i for i, n in Counter(got).items() if n > 1]
    if dupes:
        found.append(f"{who} received {len(dupes)} events more than once, e.g. {dupes[:5]}")
    missed = sorted(set(stored) - set(got))
    if missed:
        found.append(f"{who} missed {len(missed)} stored events, e.g. {missed[:5]}")
    extra = sorted(set(got) - set(stored))
    if extra:
        found.append(f"{who} received {len(extra)} events that are not stored, e.g. {extra[:5]}")
    return found

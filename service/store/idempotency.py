"""Idempotency keys: an action called again with the same key is answered, not applied again.

The HTTP layer (http/idempotency.py) names the call (``Claim``: the caller, the key, a
fingerprint of the request) for the request; the action's one transaction
(store/transactions.run) then, before its work:

- finds the key's row: the same request is answered with the stored outcome (the work is
  not run, nothing changes), another request is ``422 idempotency_key_reused``;
- otherwise inserts the row first, so that on PostgreSQL a concurrent call with the same key
  blocks on the unique (scope, key) index until this transaction ends, then fails on it and
  is retried by ``run``, which finds the committed row and answers it;

and after its work stores the outcome in that row. Effect and key commit together, or
neither: an error that rolls back (409/422, 503) stores nothing, so a retry runs again. A
deny commits its decision-log row, so it is stored too and answered again as it was.

Expired rows (older than the retention) are ignored and deleted a few at a time by the
transactions that insert keys: bounded work, no sweeper.
"""

from __future__ import annotations

import contextvars
import datetime
import json
from dataclasses import dataclass
from types import SimpleNamespace

from audience_authz.exceptions import ApiError, Denied
from audience_authz.store.db import is_postgres
from audience_authz.store.models import IdempotencyKey, database, utcnow

PRUNE_BATCH = 4  # expired rows deleted by each transaction that stores a key


@dataclass
class Claim:
    """One action call made with an Idempotency-Key."""

    scope: str  # the caller: its token identity
    key: str
    fingerprint: str
    retention_s: float
    replayed: bool = False  # set when the stored outcome answered the call
    used: bool = False  # one action per request


_claim: contextvars.ContextVar[Claim | None] = contextvars.ContextVar("idempotency_claim", default=None)


def use(claim: Claim | None) -> contextvars.Token:
    return _claim.set(claim)


def reset(token: contextvars.Token) -> None:
    _claim.reset(token)


def current() -> Claim | None:
    return _claim.get()


class Replay(Exception):
    """The stored outcome of the call; ``run`` answers it instead of running the work."""

    def __init__(self, outcome):
        super().__init__("replay")
        self.outcome = outcome


def begin() -> None:
    """First statement of the transaction of an action made with a key: raise ``Replay`` with
    the stored outcome, 422 for another request, or insert the row (see the module's doc)."""
    claim = _claim.get()
    if claim is None or claim.used:
        return
    cutoff = utcnow() - datetime.timedelta(seconds=claim.retention_s)
    row = IdempotencyKey.get_or_none(IdempotencyKey.scope == claim.scope, IdempotencyKey.key == claim.key)
    if row is not None and row.created_at < cutoff:
        row.delete_instance()
        row = None
    if row is not None:
        if row.fingerprint != claim.fingerprint:
            raise ApiError(422, "idempotency_key_reused",
                           "this Idempotency-Key was used with another request; use a new key for a new call")
        raise Replay(_outcome(row))
    _prune(cutoff)
    IdempotencyKey.insert(scope=claim.scope, key=claim.key, fingerprint=claim.fingerprint,
                          outcome="pending", body="null", created_at=utcnow()).execute()


def finish(result) -> None:
    """Store the outcome of the work in the key's row, in the same transaction."""
    claim = _claim.get()
    if claim is None or claim.used:
        return
    if isinstance(result, Denied):
        outcome, body = "denied", {"outcomes": [
            {"reasons": o.reasons, "policy_version": o.policy_version, "decision_id": o.decision_id}
            for o in result.outcomes]}
    else:
        outcome, body = "result", result
    (IdempotencyKey.update(outcome=outcome, body=json.dumps(body, separators=(",", ":")))
     .where(IdempotencyKey.scope == claim.scope, IdempotencyKey.key == claim.key).execute())


def committed(*, replayed: bool = False) -> None:
    """The action's transaction has ended: later transactions of this request are not it."""
    claim = _claim.get()
    if claim is not None and not claim.used:
        claim.used, claim.replayed = True, replayed


def _outcome(row: IdempotencyKey):
    body = json.loads(row.body)
    if row.outcome == "denied":
        return Denied([SimpleNamespace(**o) for o in body["outcomes"]])
    return body


def _prune(cutoff: datetime.datetime) -> None:
    """Delete a few expired rows (oldest first); on PostgreSQL skip rows another transaction
    holds, so pruning never waits."""
    skip = " FOR UPDATE SKIP LOCKED" if is_postgres() else ""
    database.execute_sql(
        "DELETE FROM idempotency_key WHERE id IN (SELECT id FROM idempotency_key WHERE created_at < %s"
        f" ORDER BY created_at LIMIT {PRUNE_BATCH}{skip})" if is_postgres() else
        "DELETE FROM idempotency_key WHERE id IN (SELECT id FROM idempotency_key WHERE created_at < ?"
        f" ORDER BY created_at LIMIT {PRUNE_BATCH})", (cutoff,))

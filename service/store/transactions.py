"""The one transaction of each action: run it, retry it on a conflict, commit or roll back whole.

A deny changes nothing but the decision log: it is returned by the work, committed with
the log row, then raised. Any error rolls everything back.
"""

from __future__ import annotations

import logging

import peewee as pw

from audience_authz import metrics
from audience_authz.exceptions import Denied
from audience_authz.store import effects as fx
from audience_authz.store import idempotency
from audience_authz.store.db import transaction
from audience_authz.store.locks import LockOrderConflict, final_attempt, hold_decision_log

_RETRYABLE_PGCODES = {"40001", "40P01"}  # serialization failure, deadlock detected
ATTEMPTS = 5
log = logging.getLogger("audience_authz")


def _retryable(exc: Exception) -> bool:
    """A conflict with a concurrent transaction that a fresh attempt resolves: a PostgreSQL
    serialization failure or deadlock, a unique key taken by a transaction that committed
    first (the retry re-reads, so the policy then answers e.g. already_shared or 409), or
    locks that could not be taken in order (locks.LockOrderConflict)."""
    if isinstance(exc, (pw.IntegrityError, LockOrderConflict)):
        return True
    code = getattr(getattr(exc, "orig", exc), "pgcode", None) or getattr(exc.__cause__, "pgcode", None)
    return code in _RETRYABLE_PGCODES



def run(work, *, snapshot: bool = False):
    """Run ``work()`` in one transaction; a Denied it returns is raised after commit (the
    decision log keeps the deny, nothing else changed). Conflicts with concurrent
    transactions are retried (each retry is logged as ``transaction retry``). A read
    assembled from several statements passes ``snapshot`` (``db.transaction``).

    An action called with an Idempotency-Key (store/idempotency.py) stores its outcome in
    this transaction, and a call made again is answered with it instead of run again."""
    for attempt in range(1, ATTEMPTS + 1):
        last = final_attempt.set(attempt == ATTEMPTS)
        try:
            with fx.recording() as event_ids, transaction(snapshot):
                hold_decision_log()  # its decision row numbered before a feed reader passes it
                if not snapshot:
                    idempotency.begin()
                result = work()
                if isinstance(result, dict) and "effects" in result:
                    # the summary an answer keeps when its lists are cut to the response size
                    # limit (http/bounds.py): counts by type, and where its events are in the feed
                    result["effect_counts"] = fx.effect_counts(result["effects"])
                    result["events"] = fx.span(event_ids)
                if not snapshot:
                    idempotency.finish(result)
            break
        except idempotency.Replay as replay:
            idempotency.committed(replayed=True)
            if isinstance(replay.outcome, Denied):
                raise replay.outcome from None
            return replay.outcome
        except (pw.OperationalError, pw.IntegrityError, LockOrderConflict) as exc:
            if attempt == ATTEMPTS or not _retryable(exc):
                raise
            log.warning("transaction retry %d after conflict: %s", attempt, str(exc).splitlines()[0])
        finally:
            final_attempt.reset(last)
    if not snapshot:
        idempotency.committed()
    if isinstance(result, Denied):
        raise result
    if isinstance(result, dict) and "effects" in result:
        metrics.effects_applied(result["effects"])  # counted once committed
    return result

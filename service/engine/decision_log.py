"""Writing the decision log: inside the action's transaction, or batched off the request path.

Every decision gets its row. Where it is written depends on where it is made:

* inside a transaction (an action: share, stop sharing, delete, ...), the row is inserted
  at once, in that transaction: it commits or rolls back with the change it decided;
* outside one (``POST /v1/authorize``, the batch endpoint), the row goes into this
  process's buffer, and the buffered rows are inserted together, in one transaction, by
  the first request that finds the oldest of them ``FLUSH_INTERVAL_S`` old (or
  ``FLUSH_ROWS`` waiting); when no request comes, a background thread writes them within
  about three intervals. One commit for many rows instead of one commit (and one turn at
  SQLite's write lock) per answer is what keeps the authorize path close to the cost of a
  trivial request. Requests, not the background thread, do the writing under load: a
  second thread inserting while the requests run would contend with them for the GIL.

With the setting ``decision_log=durable`` an authorize row is instead committed, in its
own transaction, before the answer leaves: a decision id returned is always findable, at
the cost of one commit per decision (docs/operations.md says which to choose).

The trade-off of the batched path: an answer may leave before its row is stored (by at
most a few intervals), and rows still in the buffer are lost if the process is killed with
SIGKILL (a crash). A normal exit (SIGTERM, gunicorn's worker exit, interpreter exit)
flushes, and ``GET /v1/decisions`` flushes its own process first. A flush that fails keeps
its rows for the next attempt; once ``MAX_BUFFERED`` rows are waiting, decisions are
written synchronously again, so a database that cannot take the log makes authorize fail
(closed) instead of piling up unlogged answers.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from contextvars import ContextVar

from audience_authz import spans
from audience_authz.store.db import insert_rows
from audience_authz.store.locks import hold_decision_log
from audience_authz.store.models import database

log = logging.getLogger("audience_authz.decision_log")
FLUSH_INTERVAL_S = 0.05  # the default of the setting decision_log_flush_s
FLUSH_ROWS = 500
MAX_BUFFERED = 20_000
COLUMNS = ("decision_id", "at", "principal", "action", "resource", "decision", "reasons",
           "policy_version", "relation", "facts", "rule_line", "request_id", "trace_id")

# Correlation (set by the HTTP layer for each request): the request id stored with each
# decision, and the decision ids made while serving it (for the access line).
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
decision_ids: ContextVar[list[str] | None] = ContextVar("decision_ids", default=None)


def begin_request(rid: str | None) -> list[str]:
    """Start correlating a request: returns the list its decisions' ids are added to."""
    made: list[str] = []
    request_id.set(rid)
    decision_ids.set(made)
    return made


class DecisionLogWriter:
    def __init__(self, interval: float = FLUSH_INTERVAL_S, durable: bool = False):
        self.interval = interval
        self.durable = durable  # every row committed before write() returns (the setting decision_log)
        self._after_fork()

    def _after_fork(self) -> None:
        """Fresh state (also in a forked child: the parent's rows are the parent's to write)."""
        self._rows: list[tuple] = []
        self._oldest = 0.0  # time.monotonic() of the oldest buffered row
        self._lock = threading.Lock()  # guards _rows and _oldest
        self._flush_lock = threading.Lock()  # one flush at a time, so rows stay in order
        self._thread: threading.Thread | None = None

    def write(self, row: tuple) -> None:
        """Log one decision (a tuple in ``COLUMNS`` order, without the request id and the
        trace id, which come from the request being served)."""
        row = (*row, request_id.get(), spans.trace_id())
        made = decision_ids.get()
        if made is not None:
            made.append(row[0])
        if database.in_transaction():
            _insert([row])
            return
        if self.durable:
            _commit([row])
            return
        now = time.monotonic()
        with self._lock:
            if not self._rows:
                self._oldest = now
            self._rows.append(row)
            waiting = len(self._rows)
            due = now - self._oldest >= self.interval
        if waiting >= MAX_BUFFERED:  # flushes keep failing: write here, and fail loudly
            self.flush()
        elif due or waiting >= FLUSH_ROWS:
            self._flush_unless_busy()
        if self._thread is None:
            self._start()

    def pending(self) -> int:
        return len(self._rows)

    def flush(self) -> int:
        """Insert every buffered row now; returns how many. On error the rows stay buffered."""
        with self._flush_lock:
            return self._flush_locked()

    def _flush_unless_busy(self) -> None:
        if not self._flush_lock.acquire(blocking=False):
            return  # another thread is writing the batch
        try:
            self._flush_locked()
        except Exception:  # noqa: BLE001 - the rows stay buffered for the next flush
            log.exception("decision log flush failed; %d rows kept for retry", self.pending())
        finally:
            self._flush_lock.release()

    def _flush_locked(self) -> int:
        with self._lock:
            rows, oldest, self._rows = self._rows, self._oldest, []
        if not rows:
            return 0
        try:
            _commit(rows)
        except BaseException:
            with self._lock:
                self._rows[:0] = rows
                self._oldest = oldest
            raise
        return len(rows)

    # -- when no request comes -------------------------------------------------------------
    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="decision-log-flusher", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(self.interval)
            with self._lock:
                stale = bool(self._rows) and time.monotonic() - self._oldest >= 2 * self.interval
            if stale:
                self._flush_unless_busy()

    def flush_at_exit(self) -> None:
        if not self._rows:
            return
        try:
            written = self.flush()
            log.info("decision log: %d buffered rows written at exit", written)
        except Exception:  # noqa: BLE001
            log.exception("decision log: %d rows could not be written at exit", self.pending())


def _commit(rows: list[tuple]) -> None:
    """Insert rows in a transaction of their own (a connection opened for it if need be)."""
    opened = database.is_closed()
    if opened:
        database.connect()
    try:
        with database.atomic():
            hold_decision_log()  # see store/locks.py: the feed reads only settled ids
            _insert(rows)
    finally:
        if opened:
            database.close()


def _insert(rows: list[tuple]) -> None:
    insert_rows("decision_log", COLUMNS, rows)


writer = DecisionLogWriter()
atexit.register(writer.flush_at_exit)
os.register_at_fork(after_in_child=writer._after_fork)

"""Writing the decision log: inside the action's transaction, or batched off the request path.

Every decision gets its row. Where it is written depends on where it is made:

* inside a transaction (an action: share, stop sharing, delete, ...), the row is inserted
  at once, in that transaction: it commits or rolls back with the change it decided;
* outside one (``POST /v1/authorize``, the batch endpoint), the row goes into this
  process's buffer and a background thread inserts the buffered rows in one transaction
  every ``FLUSH_INTERVAL_S`` (sooner when many are waiting). One commit for many rows
  instead of one commit (and one turn at SQLite's write lock) per answer is what keeps the
  authorize path close to the cost of a trivial request.

The trade-off of the batched path: an answer may leave before its row is stored (by at
most the interval), and rows still in the buffer are lost if the process is killed with
SIGKILL (a crash). A normal exit (SIGTERM, gunicorn's worker exit, interpreter exit)
flushes. A flush that fails keeps its rows for the next attempt; once ``MAX_BUFFERED`` rows
are waiting, decisions are written synchronously again, so a database that cannot take
the log makes authorize fail (closed) instead of piling up unlogged answers.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading

from .db import insert_rows
from .models import database

log = logging.getLogger("audience_authz.decision_log")
FLUSH_INTERVAL_S = float(os.environ.get("AUDIENCE_AUTHZ_DECISION_LOG_FLUSH_S", "0.05"))
FLUSH_EARLY_ROWS = 500
MAX_BUFFERED = 20_000
COLUMNS = ("decision_id", "at", "principal", "action", "resource", "decision", "reasons",
           "policy_version", "relation", "facts", "rule_line")


class DecisionLogWriter:
    def __init__(self, interval: float = FLUSH_INTERVAL_S):
        self.interval = interval
        self._rows: list[tuple] = []
        self._lock = threading.Lock()  # guards _rows
        self._flush_lock = threading.Lock()  # one flush at a time, rows stay in order
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def write(self, row: tuple) -> None:
        """Log one decision (a tuple in ``COLUMNS`` order)."""
        if database.in_transaction():
            _insert([row])
            return
        if self._pid != os.getpid():  # a forked child: the rows and thread are the parent's
            self._after_fork()
        with self._lock:
            self._rows.append(row)
            waiting = len(self._rows)
        if waiting >= MAX_BUFFERED:  # the flusher cannot keep up: write here, failing loudly
            self.flush()
            return
        if self._thread is None:
            self._start()
        if waiting >= FLUSH_EARLY_ROWS:
            self._wake.set()

    def pending(self) -> int:
        return len(self._rows)

    def flush(self) -> int:
        """Insert every buffered row now; returns how many. On error the rows stay buffered."""
        with self._flush_lock:
            with self._lock:
                rows, self._rows = self._rows, []
            if not rows:
                return 0
            try:
                opened = database.is_closed()
                if opened:
                    database.connect()
                try:
                    with database.atomic():
                        _insert(rows)
                finally:
                    if opened:
                        database.close()
            except BaseException:
                with self._lock:
                    self._rows[:0] = rows
                raise
            return len(rows)

    # -- the background flusher ------------------------------------------------------------
    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="decision-log-flusher", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - kept for the next round; logged, never lost here
                log.exception("decision log flush failed; %d rows kept for retry", self.pending())

    def _after_fork(self) -> None:
        self._rows = []
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = None
        self._pid = os.getpid()

    def flush_at_exit(self) -> None:
        if self._pid != os.getpid() or not self._rows:
            return
        try:
            written = self.flush()
            log.info("decision log: %d buffered rows written at exit", written)
        except Exception:  # noqa: BLE001
            log.exception("decision log: %d rows could not be written at exit", self.pending())


def _insert(rows: list[tuple]) -> None:
    insert_rows("decision_log", COLUMNS, rows)


writer = DecisionLogWriter()
atexit.register(writer.flush_at_exit)

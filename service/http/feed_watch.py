"""One watcher of the event feed per worker, shared by every event stream and long poll.

Each subscriber polling the database itself cost one query per subscriber five times a
second: two hundred idle streams made a thousand queries a second and took pooled
connections from the decisions. Here one thread reads what is new (one query per
``POLL_S``, only while someone subscribes), keeps the newest events in memory, already
serialised, and wakes the subscribers; each filters them in memory. Only a subscriber
whose cursor is older than that window reads the database, a page at a time and at most
``CATCH_UP_QUERIES`` at once per worker.

Event ids are given in commit order (store/locks.lock_event_feed), so reading the events
above the newest one seen never skips one that commits later.
"""

from __future__ import annotations

import json
import random
import select
import socket
import threading
import time
from collections import deque

from audience_authz import actions
from audience_authz.store.models import database

POLL_S = 0.2  # how often the watcher looks for new events while someone subscribes
WINDOW = 5000  # the newest events kept in memory
CATCH_UP_QUERIES = 2  # subscribers reading the database at once (behind the window)
CLIENT_CHECK_S = 1.0  # how often a waiting subscriber looks whether its client has gone


class Event:
    """A feed event as subscribers send it: its view, and its SSE frame made once."""

    __slots__ = ("id", "view", "frame")

    def __init__(self, view: dict):
        self.id = view["id"]
        self.view = view
        self.frame = (f"id: {view['id']}\nevent: {view['type']}\n"
                      f"data: {json.dumps(view, separators=(',', ':'))}\n\n")


def matches(view: dict, account_id: str | None, audience_id: str | None, types: tuple[str, ...]) -> bool:
    """The filters of ``actions.events``, applied to an event in memory."""
    return ((account_id is None or view["account_id"] == account_id)
            and (audience_id is None or view["audience_id"] == audience_id)
            and (not types or view["type"] in types))


class FeedWatcher:
    """The event feed of this worker, watched by one thread (the module's docstring)."""

    def __init__(self, stopping: threading.Event):
        self.stopping = stopping
        self._changed = threading.Condition()
        self._window: deque[Event] = deque(maxlen=WINDOW)
        self._floor = -1  # every event above this id is in the window (once watching)
        self.latest = -1
        self._subscribers = 0
        self._thread: threading.Thread | None = None
        self._catch_up = threading.BoundedSemaphore(CATCH_UP_QUERIES)

    # -- subscribing ---------------------------------------------------------------------------
    def subscribe(self) -> None:
        with self._changed:
            self._subscribers += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._watch, name="feed-watcher", daemon=True)
                self._thread.start()

    def unsubscribe(self) -> None:
        with self._changed:
            self._subscribers -= 1

    def page(self, after: int, limit: int, filters: dict) -> tuple[list[Event], int]:
        """The events above ``after`` that match ``filters`` (at most ``limit``) and the
        cursor after them: from memory when the window covers ``after``, else one page
        from the database."""
        with self._changed:
            if self._floor >= 0 and after >= self._floor:
                found = []
                for event in self._window:
                    if event.id > after and matches(event.view, **filters):
                        found.append(event)
                        if len(found) == limit:
                            return found, event.id
                return found, max(after, self.latest)
        with self._catch_up:
            database.connect(reuse_if_open=True)
            try:
                page = actions.events(after, limit, **filters)
            finally:
                database.close()
        return [Event(view) for view in page["events"]], page["next_after"]

    def wait(self, after: int, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for an event above ``after``; says whether one came."""
        with self._changed:
            if self.latest > after:
                return True
            self._changed.wait(timeout)
            return self.latest > after

    def wake_all(self) -> None:
        with self._changed:
            self._changed.notify_all()

    # -- the watching thread -------------------------------------------------------------------
    def _watch(self) -> None:
        while not self.stopping.is_set():
            with self._changed:
                if self._subscribers <= 0:
                    self._thread = None  # the next subscriber starts another
                    return
            try:
                self._read_new()
            except Exception:  # noqa: BLE001 - the database away: try again next round
                pass
            self.stopping.wait(POLL_S)
        self.wake_all()

    def _read_new(self) -> None:
        database.connect(reuse_if_open=True)
        try:
            if self.latest < 0:
                latest = actions.latest_event_id()
                with self._changed:
                    self.latest = self._floor = latest
                return
            new = []
            after = self.latest
            while True:
                page = actions.events(after, 1000)
                new += [Event(view) for view in page["events"]]
                if len(page["events"]) < 1000:
                    break
                after = page["next_after"]
        finally:
            database.close()
        if new:
            with self._changed:
                self._window.extend(new)
                if len(self._window) == WINDOW:
                    self._floor = self._window[0].id - 1
                self.latest = new[-1].id
                self._changed.notify_all()


def client_gone(sock) -> bool:
    """Has the client of this connection closed it (or reset it)? False when unknown."""
    if sock is None:
        return False
    try:
        poll = select.poll()  # not select(): a worker may hold more than 1024 descriptors
        poll.register(sock, select.POLLIN | select.POLLERR | select.POLLHUP)
        if not poll.poll(0):
            return False
        return sock.recv(1, socket.MSG_PEEK) == b""  # readable: closed (b""), or sending more
    except (BlockingIOError, InterruptedError, TimeoutError):
        return False
    except (OSError, ValueError):
        return True


def deadline_wait(watcher: FeedWatcher, after: int, until: float, sock) -> bool:
    """Wait until an event above ``after``, ``until`` (monotonic), the worker stopping or
    the client gone; says whether to read again (an event came)."""
    while not watcher.stopping.is_set():
        remaining = until - time.monotonic()
        if remaining <= 0:
            return False
        # spread over time: subscribers that came together must not all wake together
        if watcher.wait(after, min(CLIENT_CHECK_S * random.uniform(0.75, 1.25), remaining)):
            return True
        if client_gone(sock):
            return False
    return False

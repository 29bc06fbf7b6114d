"""The relay loop: read the events after the broker's position, publish them, again.

Correct under kill -9 anywhere and with any number of relays, because the relay holds no
position of its own: each round starts from ``Publisher.position()`` (the broker's last
event), and a publish that finds the broker moved (another relay, or a copy stored before
a lost acknowledgement) makes it read the position again. Event ids are given in commit
order, so "the events above the last published id" misses nothing and repeats nothing;
a rolled-back transaction's events are never in the table, so never published.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

import peewee
from prometheus_client import Counter, Gauge

from audience_authz.relay.publisher import BrokerError, Message, PositionMoved, Publisher
from audience_authz.store.models import Event, database

log = logging.getLogger("audience_authz.relay")

LAG = Gauge("audience_authz_relay_lag_events", "committed events not yet published (as of the last round)")
PUBLISHED = Counter("audience_authz_relay_published_total", "events published to the broker by this relay")
ERRORS = Counter("audience_authz_relay_errors_total", "rounds that failed (broker or database), by stage",
                 ["stage"])
MOVED = Counter("audience_authz_relay_position_moved_total",
                "publishes refused because another relay had published first (not an error)")
for _stage in ("broker", "database"):
    ERRORS.labels(_stage)


def iso(at) -> str:
    """As the feed writes it (actions/views.iso; the relay does not import the actions)."""
    return at.isoformat(timespec="microseconds") + "Z"


def message_of(event: Event) -> Message:
    """The body is the event as the feed (GET /v1/events) shows it."""
    body = {"id": event.id, "type": event.type, "audience_id": event.audience_id, "account_id": event.account_id,
            "decision_id": event.decision_id, "at": iso(event.at),
            "payload": json.loads(event.payload)}
    return Message(event.id, event.type, event.account_id, json.dumps(body, separators=(",", ":")).encode())


def events_after(position: int, limit: int) -> tuple[list[Message], int]:
    """(up to ``limit`` events above ``position`` in id order, how many there are in all)."""
    with database.connection_context():
        rows = list(Event.select().where(Event.id > position).order_by(Event.id).limit(limit))
        pending = len(rows) if len(rows) < limit else Event.select().where(Event.id > position).count()
    return [message_of(e) for e in rows], pending


async def relay(publisher: Publisher, *, batch: int, poll_s: float, stop: asyncio.Event,
                backoff_s: float = 1.0) -> None:
    """Publish until ``stop`` is set; errors are counted, logged and retried after ``backoff_s``."""
    position = None
    while not stop.is_set():
        stage = "broker"
        try:
            if position is None:
                position = await publisher.position()
                log.info("relay starting after event %s", position)
            stage = "database"
            messages, pending = await asyncio.to_thread(events_after, position, batch)
            LAG.set(pending)
            if not messages:
                await _wait(stop, poll_s)
                continue
            stage = "broker"
            started = time.monotonic()
            await publisher.publish(messages)
            position = messages[-1].event_id
            PUBLISHED.inc(len(messages))
            LAG.set(pending - len(messages))
            log.debug("published %d events up to %d in %.3fs", len(messages), position, time.monotonic() - started)
        except PositionMoved as moved:
            MOVED.inc()
            PUBLISHED.inc(moved.published)
            log.info("another relay published first (%s): reading the position again", moved)
            position = None
        except (BrokerError, peewee.PeeweeException) as exc:  # the broker or the database away: count, say, wait, retry
            ERRORS.labels(stage).inc()
            log.error("relay round failed at the %s: %s: %s", stage, type(exc).__name__, exc)
            position = None
            await _wait(stop, backoff_s)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass

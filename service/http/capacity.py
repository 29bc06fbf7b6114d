"""What holds this worker's capacity, by kind of request, and the bound on feed subscribers.

A server worker (``http/server.py``) has three thread pools, so that no kind of request can
take the threads of another: **decisions** (every API request; ``--threads``), **probes**
(``/healthz``, ``/readyz``, ``/metrics``: two threads nothing else uses) and **feeds**
(event streams and long polls, which wait for events for seconds or hours). The worker
counts here what each pool has running and queued; ``/readyz`` and ``/metrics`` read it.

The feed pool is bounded by :class:`Subscribers`: at most ``max_subscribers`` open streams
and waiting long polls per worker, and ``max_subscribers_per_token`` per token. Past either
the request is refused at once (503, or 429 for the token's share) with ``Retry-After``,
so an unknown number of consumers cannot make the pool's queue grow without end.
"""

from __future__ import annotations

import threading
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field

from audience_authz import metrics
from audience_authz.exceptions import ApiError

RETRY_AFTER_S = 5  # what a refused subscriber is told to wait before trying again


@dataclass
class Pool:
    """One thread pool of the worker: its size, and its requests running and queued."""

    name: str
    threads: int
    running: int = 0
    queued: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def queue(self) -> None:
        with self._lock:
            self.queued += 1

    def start(self) -> None:
        with self._lock:
            self.queued -= 1
            self.running += 1

    def stop(self) -> None:
        with self._lock:
            self.running -= 1

    def snapshot(self) -> dict:
        return {"threads": self.threads, "busy": self.running, "queued": self.queued}

    def saturated(self) -> bool:
        """Every thread busy and requests waiting for one."""
        return self.running >= self.threads and self.queued > 0


# this process's pools, set by the server worker when it starts (none under the dev server
# or Flask's test client, where every request runs on the caller's thread)
POOLS: dict[str, Pool] = {}


def publish() -> None:
    """The pools' figures into the gauges (the worker's main loop calls it about once a
    second: a request only moves counters in memory, never a metrics file)."""
    for name, pool in POOLS.items():
        metrics.POOL_BUSY.labels(name).set(pool.running)
        metrics.POOL_QUEUED.labels(name).set(pool.queued)


def snapshot() -> dict:
    """The pools of this worker, for ``/readyz``."""
    return {name: pool.snapshot() for name, pool in POOLS.items()}


def decisions_saturated() -> bool:
    pool = POOLS.get("decisions")
    return pool is not None and pool.saturated()


class Subscribers:
    """The open event streams and waiting long polls of this worker, bounded overall and
    per token (the module's docstring)."""

    def __init__(self, limit: int, per_token: int):
        self.limit, self.per_token = limit, per_token
        self._lock = threading.Lock()
        self._by_token: Counter[str] = Counter()
        self._by_kind: Counter[str] = Counter()

    @contextmanager
    def hold(self, kind: str, token: str):
        """A place for one subscriber of ``kind`` (``stream`` or ``long_poll``) of ``token``
        while the block runs; refused with 503/429 and ``Retry-After`` when none is left."""
        with self._lock:
            if sum(self._by_kind.values()) >= self.limit:
                metrics.SUBSCRIBERS_REFUSED.labels("worker").inc()
                raise ApiError(503, "too_many_subscribers",
                               f"this worker already serves {self.limit} event streams and long polls; retry later",
                               headers={"Retry-After": str(RETRY_AFTER_S)})
            if self._by_token[token] >= self.per_token:
                metrics.SUBSCRIBERS_REFUSED.labels("token").inc()
                raise ApiError(429, "too_many_subscribers",
                               f"this token already holds {self.per_token} event streams and long polls on this"
                               " worker; close one or retry later", headers={"Retry-After": str(RETRY_AFTER_S)})
            self._by_token[token] += 1
            self._by_kind[kind] += 1
        metrics.SUBSCRIBERS.labels(kind).inc()
        try:
            yield
        finally:
            with self._lock:
                self._by_token[token] -= 1
                if not self._by_token[token]:
                    del self._by_token[token]
                self._by_kind[kind] -= 1
            metrics.SUBSCRIBERS.labels(kind).dec()

    def snapshot(self) -> dict:
        with self._lock:
            return {"streams": self._by_kind["stream"], "long_polls": self._by_kind["long_poll"],
                    "limit": self.limit, "per_token": self.per_token}

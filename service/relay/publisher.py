"""What the relay needs of a broker (``Publisher``), and the NATS JetStream one.

The broker is the record of what was published: ``position()`` reads the id of the last
event it holds, and ``publish`` appends after it only if nobody else has appended since
(else ``PositionMoved``). So a relay keeps no state of its own, any number of relays can
run at once, and a relay killed at any point is followed by one that starts where the
broker ends. A Kafka publisher would do the same with a transactional producer.
"""

from __future__ import annotations

import contextlib
import logging
import re
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger("audience_authz.relay")

# a NATS subject token holds no '.', '*', '>' or whitespace: an account id (letters, digits
# and _ . : - in the API) keeps its characters but '.', which is %2E (any other would be %XX)
_UNSAFE = re.compile(r"[^A-Za-z0-9_:-]")
NO_ACCOUNT = "~"  # an event of no account: no account id is '~' (it would be %7E)


@dataclass(frozen=True)
class Message:
    """One event to publish: its id (the de-duplication key), the subject tokens, the body."""

    event_id: int
    kind: str  # the event type
    account_id: str | None
    body: bytes


class PositionMoved(Exception):
    """Another relay published since this one read the broker's position: read it again.
    ``published``: how many of the messages given were stored before that was found."""

    def __init__(self, reason: str, published: int):
        super().__init__(reason)
        self.published = published


class BrokerError(Exception):
    """The broker cannot be reached or refused a request: the relay counts it and retries."""


class Publisher(Protocol):
    async def _connection_error(self, exc: Exception) -> None:
        log.warning("NATS connection: %s: %s", type(exc).__name__, exc)

    async def position(self) -> int:
        """The id of the last event the broker holds (0: none)."""

    async def publish(self, messages: list[Message]) -> None:
        """Append ``messages`` (ids ascending, all above ``position()``) in order; raise
        ``PositionMoved`` when the broker's last event is no longer the one read."""

    async def close(self) -> None: ...


def account_token(account_id: str | None) -> str:
    """The account as one subject token: letters, digits, '_', ':' and '-' as they are,
    any other byte of its UTF-8 %XX (so 'acct.1' is 'acct%2E1'); no account is ``~``."""
    if account_id is None:
        return NO_ACCOUNT
    return _UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), account_id)


def subject(prefix: str, message: Message) -> str:
    return f"{prefix}.{message.kind}.{account_token(message.account_id)}"


class JetStreamPublisher:
    """Events to a JetStream stream of their own (subjects ``<prefix>.>``).

    Every publish carries ``Nats-Msg-Id`` (the event id: JetStream drops a second copy
    within its duplicate window) and ``Nats-Expected-Last-Sequence`` (the stream's last
    sequence this relay knows: JetStream refuses the message if another relay appended
    meanwhile, whatever the window). One message at a time, each acknowledged before the
    next: the stream's order is the events' order.
    """

    def __init__(self, url: str, stream: str, subject_prefix: str, *, max_age_s: float = 0,
                 duplicate_window_s: float = 120, timeout_s: float = 5):
        self.url, self.stream, self.prefix = url, stream, subject_prefix
        self.max_age_s, self.duplicate_window_s, self.timeout_s = max_age_s, duplicate_window_s, timeout_s
        self.nc = self.js = None
        self.last_seq = 0  # the stream's sequence of the last message known to be there

    @contextlib.contextmanager
    def _broker(self):
        """NATS's own errors (and a lost connection) as ``BrokerError``."""
        import nats.errors

        try:
            yield
        except (nats.errors.Error, OSError) as exc:
            raise BrokerError(f"{type(exc).__name__}: {exc}") from exc

    async def connect(self) -> None:
        with self._broker():
            await self._connect()

    async def _connect(self) -> None:
        import nats
        from nats.js.api import StreamConfig
        from nats.js.errors import NotFoundError

        # a few reconnects, then the connection closes and the next round connects anew: a
        # relay that cannot reach NATS fails (and says so) instead of waiting silently
        self.nc = await nats.connect(self.url, connect_timeout=self.timeout_s, max_reconnect_attempts=5,
                                     reconnect_time_wait=1, error_cb=self._connection_error)
        self.js = self.nc.jetstream(timeout=self.timeout_s)
        try:
            await self.js.stream_info(self.stream)
        except NotFoundError:
            await self.js.add_stream(StreamConfig(
                name=self.stream, subjects=[f"{self.prefix}.>"], max_age=self.max_age_s or None,
                duplicate_window=self.duplicate_window_s))

    async def _connection_error(self, exc: Exception) -> None:
        log.warning("NATS connection: %s: %s", type(exc).__name__, exc)

    async def position(self) -> int:
        with self._broker():
            return await self._position()

    async def _position(self) -> int:
        from nats.js.errors import NotFoundError

        if self.nc is None or self.nc.is_closed:  # given up reconnecting: a new connection
            await self._connect()

        info = await self.js.stream_info(self.stream)
        self.last_seq = info.state.last_seq
        if self.last_seq == 0:
            return 0
        try:
            last = await self.js.get_msg(self.stream, seq=self.last_seq)
        except NotFoundError:
            # removed (max age, a purge): where to go on from is unknown; never guess
            raise BrokerError(f"the last message of stream {self.stream} (seq {self.last_seq}) is gone: "
                               "the relay cannot tell what was published") from None
        return int((last.headers or {})["Nats-Msg-Id"])

    async def publish(self, messages: list[Message]) -> None:
        with self._broker():
            await self._publish(messages)

    async def _publish(self, messages: list[Message]) -> None:
        from nats.js.errors import BadRequestError

        for done, message in enumerate(messages):
            headers = {"Nats-Msg-Id": str(message.event_id), "Nats-Expected-Last-Sequence": str(self.last_seq)}
            try:
                ack = await self.js.publish(subject(self.prefix, message), message.body, stream=self.stream,
                                            headers=headers, timeout=self.timeout_s)
            except BadRequestError as exc:
                if exc.err_code == 10071:  # wrong last sequence: another relay appended
                    raise PositionMoved(str(exc), done) from None
                raise
            if ack.duplicate:  # stored already (by another relay, or before a lost ack)
                raise PositionMoved(f"event {message.event_id} was published already", done)
            self.last_seq = ack.seq

    async def close(self) -> None:
        if self.nc is not None:
            await self.nc.close()

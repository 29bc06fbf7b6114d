"""The relay's tests: the machine's NATS JetStream, ``audience-authz relay`` in a
subprocess, and what a stream holds, read back in order."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.support.live import stop_process

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_NATS = "nats://127.0.0.1:4222"


def nats_url() -> str:
    """The test NATS server (AUDIENCE_AUTHZ_TEST_NATS); skipped when it is not there,
    unless AUDIENCE_AUTHZ_REQUIRE_NATS is set (CI: .ci/run), where that is a failure."""
    url = os.environ.get("AUDIENCE_AUTHZ_TEST_NATS", DEFAULT_NATS)
    where = urlparse(url)
    try:
        socket.create_connection((where.hostname, where.port or 4222), timeout=3).close()
    except OSError as exc:
        if os.environ.get("AUDIENCE_AUTHZ_REQUIRE_NATS"):
            raise RuntimeError(f"NATS JetStream is required here but unreachable at {url}: {exc}") from exc
        pytest.skip(f"NATS is not reachable at {url} (set AUDIENCE_AUTHZ_TEST_NATS; nats-server -js): {exc}")
    return url


def unique_names() -> tuple[str, str]:
    """(stream, subject prefix) of one test: no two tests or runs share a stream."""
    tag = uuid.uuid4().hex[:10]
    return f"TEST_RELAY_{tag}", f"test_relay_{tag}.events"


def stream_messages(url: str, stream: str) -> list[dict]:
    """Every message of ``stream`` in stream order: seq, subject, msg_id, body (parsed)."""
    import nats
    from nats.js.errors import NotFoundError

    async def read():
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            try:
                info = await js.stream_info(stream)
            except NotFoundError:
                return []
            out = []
            if info.state.last_seq == 0:  # empty: first_seq is 0, and there is no message 0
                return out
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                msg = await js.get_msg(stream, seq=seq)
                out.append({"seq": msg.seq, "subject": msg.subject, "msg_id": (msg.headers or {}).get("Nats-Msg-Id"),
                            "body": json.loads(msg.data)})
            return out
        finally:
            await nc.close()

    return asyncio.run(read())


def delete_stream(url: str, stream: str) -> None:
    import nats
    from nats.js.errors import NotFoundError

    async def delete():
        nc = await nats.connect(url)
        try:
            await nc.jetstream().delete_stream(stream)
        except NotFoundError:
            pass
        finally:
            await nc.close()

    asyncio.run(delete())


class Relay:
    """``audience-authz relay`` in a subprocess, until stopped or killed."""

    def __init__(self, database_url: str, nats: str, stream: str, prefix: str, extra_args: list[str] | None = None):
        self.args = [sys.executable, "-m", "audience_authz", "relay", "--database", database_url, "--nats", nats,
                     "--stream", stream, "--subject-prefix", prefix, *(extra_args or [])]
        self.env = {**os.environ, "AUDIENCE_AUTHZ_RELAY_POLL_S": "0.2", "AUDIENCE_AUTHZ_LOG_LEVEL": "INFO"}
        self.process = None

    def start(self) -> Relay:
        self.log_path = Path(tempfile.mkstemp(prefix="authz-relay-", suffix=".log")[1])
        self.log = self.log_path.open("w")
        self.process = subprocess.Popen(self.args, cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        return self

    def kill_hard(self) -> None:
        self.process.kill()
        self.process.wait(10)
        self.log.close()

    def stop(self) -> None:
        if self.process:
            stop_process(self.process)
        if not self.log.closed:
            self.log.close()

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def wait_for_stream(url: str, stream: str, last_id: int, relays: list[Relay], timeout: float = 60) -> list[dict]:
    """The stream's messages once its last holds event ``last_id`` (or the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        messages = stream_messages(url, stream)
        if messages and int(messages[-1]["msg_id"]) >= last_id or last_id == 0:
            return messages
        if time.monotonic() > deadline:
            logs = "\n".join(r.output()[-2000:] for r in relays)
            raise AssertionError(f"the stream reached {messages[-1]['msg_id'] if messages else 0}, not {last_id}:\n{logs}")
        for r in relays:
            assert r.process.poll() is None, f"the relay exited: {r.output()[-3000:]}"
        time.sleep(0.2)

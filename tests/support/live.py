"""The service as it runs in production: ``audience-authz serve`` (gunicorn) in a subprocess,
and the PostgreSQL databases the tests make for it."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import requests

from tests.support.api import Api

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """``audience-authz serve`` in a subprocess, on a free port, until the block ends."""

    def __init__(self, database_url: str, token: str = "test-token", policy_dir: str | None = None,
                 extra_args: list[str] | None = None, env: dict | None = None, startup_s: float = 30):
        self.database_url = database_url
        self.startup_s = startup_s  # seconds it may take to answer /healthz
        self.token = token
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.args = [sys.executable, "-m", "audience_authz", "serve", "--port", str(self.port),
                     "--database", database_url, *(["--policy-dir", policy_dir] if policy_dir else []),
                     *(extra_args or [])]
        # no drain on SIGTERM unless a test asks for one: stopping a test server stays quick
        self.env = {**os.environ, "AUDIENCE_AUTHZ_TOKENS": token, "AUDIENCE_AUTHZ_DRAIN_SECONDS": "0", **(env or {})}
        self.process = None
        self.log_path = None

    def start(self):
        self.log_path = Path(tempfile.mkstemp(prefix="authz-server-", suffix=".log")[1])
        self.log = self.log_path.open("w")
        self.process = subprocess.Popen(self.args, cwd=ROOT, env=self.env, stdout=self.log,
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.startup_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-3000:]}")
            try:
                if requests.get(self.base_url + "/healthz", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:  # not listening yet, or too busy to answer
                time.sleep(0.1)
        raise RuntimeError(f"server did not start: {self.log_path.read_text()[-3000:]}")

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.log_path:
            self.log.close()

    def client(self, token: str | None = None):
        """An ``Api`` of this server (its own token unless another is given)."""
        return Api(self.base_url, token or self.token)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _postgres_admin_url() -> str:
    return os.environ.get("AUDIENCE_AUTHZ_TEST_POSTGRES", DEFAULT_POSTGRES)


@contextlib.contextmanager
def postgres_database():
    """A new, empty PostgreSQL database for this test session, dropped afterwards."""
    import psycopg2

    admin_url = _postgres_admin_url()
    try:
        admin = psycopg2.connect(admin_url, connect_timeout=3)
    except psycopg2.OperationalError as exc:
        if os.environ.get("AUDIENCE_AUTHZ_REQUIRE_POSTGRES"):
            raise RuntimeError(f"PostgreSQL is required here but unreachable at {admin_url}: {exc}") from exc
        pytest.skip(f"PostgreSQL is not reachable at {admin_url} (set AUDIENCE_AUTHZ_TEST_POSTGRES): {exc}")
    admin.autocommit = True
    name = f"authz_test_{uuid.uuid4().hex[:12]}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()

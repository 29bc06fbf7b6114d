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
# the policy the tests serve and the tools' tests copy: the service's tests are not tests of
# the shipped policy (policy/tests/*.yaml are), so an author's edit of policy/ leaves them be
FIXTURE_POLICY = ROOT / "tests" / "fixtures" / "policy"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 10 s: a process a test started is never left running."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class LiveServer:
    """``audience-authz serve`` in a subprocess, on a free port, until the block ends."""

    def __init__(self, database_url: str, token: str = "test-token", policy_dir: str | None = None,
                 extra_args: list[str] | None = None, env: dict | None = None, startup_s: float = 90):
        self.database_url = database_url
        self.startup_s = startup_s  # seconds to answer /healthz (a loaded 2-core machine took over 60 s for 2 workers)
        self.token = token
        self.policy_dir = policy_dir
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
        self.stop()  # not left running (and loading the machine) after the test fails
        raise RuntimeError(f"server did not start: {self.log_path.read_text()[-3000:]}")

    def stop(self):
        if self.process:
            stop_process(self.process)
        if self.log_path:
            self.log.close()

    def policy_dir_served(self) -> Path:
        """The policy directory this server was started on (the shipped one unless given)."""
        return Path(self.policy_dir or self.env.get("AUDIENCE_AUTHZ_POLICY_DIR") or ROOT / "policy")

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

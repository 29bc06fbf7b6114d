"""Helpers of the HTTP tests: a live server process, a small client, scenario builders."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """``audience-authz serve`` in a subprocess, on a free port, until the block ends."""

    def __init__(self, database_url: str, token: str = "test-token", policy_dir: str | None = None,
                 extra_args: list[str] | None = None, env: dict | None = None):
        self.database_url = database_url
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
        import tempfile
        self.log_path = Path(tempfile.mkstemp(prefix="authz-server-", suffix=".log")[1])
        self.log = self.log_path.open("w")
        self.process = subprocess.Popen(self.args, cwd=ROOT, env=self.env, stdout=self.log,
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
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
            raise RuntimeError(f"PostgreSQL is required here but unreachable at {admin_url}: {exc}")
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


@dataclass
class Response:
    status: int
    body: object
    headers: dict

    @property
    def codes(self) -> list[str]:
        return [r["code"] for r in self.body.get("reasons", [])]


class Api:
    """A thin client of the HTTP API: ``api.put(path, json, account=...)``."""

    def __init__(self, base_url: str, token: str):
        self.base_url = base_url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, json=None, account: str | None = None, **kwargs) -> Response:
        headers = kwargs.pop("headers", {})
        if account is not None:
            headers["X-Account-Id"] = account
        r = self.session.request(method, self.base_url + path, json=json, headers=headers, timeout=60, **kwargs)
        try:
            body = r.json()
        except ValueError:
            body = r.text
        return Response(r.status_code, body, dict(r.headers))

    def get(self, path, **kw):
        return self.call("GET", path, **kw)

    def post(self, path, json=None, **kw):
        return self.call("POST", path, json=json, **kw)

    def put(self, path, json=None, **kw):
        return self.call("PUT", path, json=json, **kw)

    def patch(self, path, json=None, **kw):
        return self.call("PATCH", path, json=json, **kw)

    def delete(self, path, **kw):
        return self.call("DELETE", path, **kw)

    def authorize(self, account, action, audience, **context) -> Response:
        body = {"principal": {"account_id": account}, "action": action,
                "resource": {"audience_id": audience}}
        if context:
            body["context"] = context
        return self.post("/v1/authorize", body)

    def ok(self, response: Response, status: int = 200) -> dict:
        assert response.status == status, response.body
        return response.body


@dataclass
class World:
    """The source's scenario: ids unique to one test."""

    api: Api
    u: str

    def id(self, name: str) -> str:
        return f"{name}_{self.u}"

    def __getattr__(self, name: str) -> str:
        if name.startswith("_"):
            raise AttributeError(name)
        return self.id(name)


def world_factory(api: Api, *, terms: bool = True, share_with_recipient: bool = True) -> World:
    """BCs bc (owner's) and bc2 (another), accounts owner, recipient, peer (same BC),
    other (bc2), nobc (no BC); audiences A, B, C of owner shared with recipient; none applied."""
    w = World(api, uuid.uuid4().hex[:8])
    api.ok(api.put(f"/v1/business-centers/{w.bc}", {"name": "BC", "cross_bc_allowlisted": False}))
    api.ok(api.put(f"/v1/business-centers/{w.bc2}", {"name": "BC 2", "cross_bc_allowlisted": False}))
    for name, bc in (("owner", w.bc), ("recipient", w.bc), ("peer", w.bc), ("other", w.bc2), ("nobc", None)):
        api.ok(api.put(f"/v1/accounts/{w.id(name)}", {"name": name, "business_center_id": bc}))
    if terms:
        api.ok(api.post(f"/v1/accounts/{w.owner}/terms-acceptance", account=w.owner))
    for name, source in (("A", "website_traffic"), ("B", "customer_file"), ("C", "engagement")):
        api.ok(api.post("/v1/audiences", {"id": w.id(name), "name": f"audience {name}", "source": source},
                        account=w.owner), 201)
        if share_with_recipient:
            api.ok(api.post(f"/v1/audiences/{w.id(name)}/shares", {"account_ids": [w.recipient]},
                            account=w.owner), 201)
    return w


def last_id(api: Api, feed: str = "events") -> int:
    """The id of the newest entry of a feed (events or decisions; 0 when it is empty)."""
    after = 0
    while True:
        page = api.ok(api.get(f"/v1/{feed}?after={after}&limit=1000"))
        if not page[feed]:
            return after
        after = page["next_after"]


def last_event_id(api: Api) -> int:
    return last_id(api, "events")

"""The service the HTTP tests talk to, in two tiers.

* ``server`` / ``api``: the rule, API-shape and error tests. In the fast tier the app runs
  in this process (Flask's test client, SQLite in a temporary directory: one app for the
  session); in the full tier the same tests run again against a live `audience-authz
  serve` on PostgreSQL.
* ``service``: that in-process app itself, for tests that also look inside it (its
  ``app``, ``authz``, ``policy_dir``), in process in both tiers.
* ``live_server`` / ``live_api``: what only a server process shows (gunicorn's limits,
  its log, headers on the wire), a live server per database, full tier only.

Tests marked ``full`` (directly, or through a ``full`` parameter) run only in the full tier
(`make test`); `make test-fast` leaves them out.

PostgreSQL comes from AUDIENCE_AUTHZ_TEST_POSTGRES (default: the local server, database
`test`); each test session gets a database of its own. Where PostgreSQL is absent the
PostgreSQL runs are skipped, unless AUDIENCE_AUTHZ_REQUIRE_POSTGRES is set (CI), where
its absence fails the run.
"""

from __future__ import annotations

import os
import uuid

import pytest

from tests.support import FIXTURE_POLICY, BaseApi, InProcessServer, LiveServer, postgres_database, world_factory
from tests.support.ops import DATABASES, fresh_database

# tests/fixtures/policy is the policy the tools' tests copy and edit (tests/support/policy.py):
# its own cases and properties are not tests of the shipped policy, and are not collected
collect_ignore = ["fixtures"]
# and it is the policy every server of the tests serves (in process, or a child process that
# inherits the environment) and the policy tools read without --policy-dir
os.environ["AUDIENCE_AUTHZ_POLICY_DIR"] = str(FIXTURE_POLICY)

TOKEN = "test-token"
FULL = pytest.mark.full


@pytest.fixture(scope="session")
def inproc_server(tmp_path_factory):
    """The one app of the session (``create_app`` can run once per process): kept until the
    session ends, whatever order pytest gives the parameters of ``server``."""
    with InProcessServer(tmp_path_factory.mktemp("inproc"), token=TOKEN) as inproc:
        yield inproc


@pytest.fixture
def service(inproc_server) -> InProcessServer:
    """The session's in-process app, for tests that also look inside it (``app``, ``authz``,
    ``policy_dir``; in process in both tiers). A test that changes its policy puts it back."""
    yield inproc_server
    inproc_server.settle()


@pytest.fixture(scope="session", params=["inproc", pytest.param("postgresql", marks=FULL)])
def server(request):
    if request.param == "inproc":
        yield request.getfixturevalue("inproc_server")
    else:
        with postgres_database() as url, LiveServer(url, token=TOKEN) as live:
            yield live


@pytest.fixture(scope="session", params=[pytest.param("sqlite", marks=FULL), pytest.param("postgresql", marks=FULL)])
def live_server(request, tmp_path_factory):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'authz.db'}"
        with LiveServer(url, token=TOKEN) as live:
            yield live
    else:
        with postgres_database() as url, LiveServer(url, token=TOKEN) as live:
            yield live


@pytest.fixture
def api(server) -> BaseApi:
    yield server.client()
    if isinstance(server, InProcessServer):
        server.settle()  # no decision row of this test left buffered for a later one


@pytest.fixture
def live_api(live_server) -> BaseApi:
    return live_server.client()


@pytest.fixture(params=DATABASES)
def empty_database(request, tmp_path):
    """The URL of a new, empty database of its own (SQLite; PostgreSQL in the full tier)."""
    with fresh_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def world(api):
    """A fresh copy of the source's scenario with ids unique to the test."""
    return world_factory(api)


@pytest.fixture
def uid() -> str:
    return uuid.uuid4().hex[:8]

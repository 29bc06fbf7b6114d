"""Live servers for the HTTP tests: a real `audience-authz serve` process per database.

PostgreSQL comes from AUDIENCE_AUTHZ_TEST_POSTGRES (default: the local server, database
`test`); each test session gets a database of its own. Where PostgreSQL is absent the
PostgreSQL runs are skipped, unless AUDIENCE_AUTHZ_REQUIRE_POSTGRES is set (CI), where
its absence fails the run.
"""

from __future__ import annotations

import os
import uuid

import pytest

from tests.support import Api, LiveServer, postgres_database, world_factory

TOKEN = "test-token"


def _database_params():
    return ["sqlite", "postgresql"]


@pytest.fixture(scope="session", params=_database_params())
def server(request, tmp_path_factory):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'authz.db'}"
        with LiveServer(url, token=TOKEN) as live:
            yield live
    else:
        with postgres_database() as url, LiveServer(url, token=TOKEN) as live:
            yield live


@pytest.fixture
def api(server) -> Api:
    return Api(server.base_url, TOKEN)


@pytest.fixture
def world(api):
    """A fresh copy of the source's scenario with ids unique to the test."""
    return world_factory(api)


@pytest.fixture
def uid() -> str:
    return uuid.uuid4().hex[:8]

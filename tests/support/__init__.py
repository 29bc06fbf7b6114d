"""Helpers of the tests, in one folder:

* ``api``: ``Api`` (HTTP to a server process), the ``World`` scenario, feed helpers;
* ``inproc``: the service in the test process (Flask's test client), the fast tier's;
* ``live``: ``LiveServer`` (``audience-authz serve`` in a subprocess), PostgreSQL databases;
* ``invariants``: the store's invariants, read from the database;
* ``bulk``: large states built with bulk inserts; ``reliability``: private servers, killing
  them, raw requests; ``ops``: fresh databases, the CLI in a subprocess, JSON log lines;
  ``policy``: copies of policy/ to break, the CLI in process.

What the tests import from ``tests.support`` itself is re-exported here.
"""

from tests.support.api import Api, BaseApi, Response, World, last_event_id, last_id, world_factory
from tests.support.inproc import InProcessApi, InProcessServer
from tests.support.live import (
           DEFAULT_POSTGRES,
           FIXTURE_POLICY,
           ROOT,
           LiveServer,
           _postgres_admin_url,
           free_port,
           postgres_database,
)

__all__ = ["Api", "BaseApi", "DEFAULT_POSTGRES", "FIXTURE_POLICY", "InProcessApi", "InProcessServer", "LiveServer",
           "ROOT", "Response", "World", "_postgres_admin_url", "free_port", "last_event_id", "last_id", "postgres_database",
           "world_factory"]

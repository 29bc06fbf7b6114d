"""The service in the test process: the app of ``create_app`` over SQLite and a copy of the
fixture policy (tests/fixtures/policy) in a temporary directory, called through Flask's test client, with the same
``Api`` as a live server.

One app per test session (``create_app`` sets up module-level blueprints and globals: the
models' database proxy, the decision-log writer): the ``inproc_server`` fixture's, which
tests that also look inside the service (its ``app``, ``authz``, ``policy_dir``) take as
``service``. Tests keep apart by unique ids (``world``, ``uid``); a test that edits
``policy_dir`` or swaps the policy in force puts it back (``restore_policy``) before it
ends. Two things the harness looks after, because the test process is shared:

* some tests bind the models to a database of their own (``db.init`` for query plans,
  migrations, the invariant checker); before each request the proxy is bound back to the
  app's database, and each test's buffered decision rows are written before it ends;
* every request must give its connection back to the pool (``teardown_request``): after
  each one the pool is asked, and a connection still in use fails the test.

The decision log's flush interval is long here, so its rows reach the database only when
something flushes them (``GET /v1/decisions`` does, before it reads): a test that reads
its decisions right after asking them shows the batching as a client sees it, not a timer.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from audience_authz import config
from audience_authz.engine import decision_log
from audience_authz.store import db
from audience_authz.store.models import database
from tests.support.api import BaseApi, Response, _body
from tests.support.live import FIXTURE_POLICY

FLUSH_INTERVAL_S = 600.0  # no timer writes the log during a test; see above
_NO_PROCESS = ("the in-process app has no {}: a test that needs a server process (sockets, "
               "requests, AuthzClient, the server's log) takes the live_server / live_api fixtures (full tier)")


class InProcessServer:
    """``create_app(config.load(database=..., tokens=...))`` in this process, until the block
    ends, on a copy of the fixture policy in ``root``. Offers what the tests read of a
    ``LiveServer``: ``database_url``, ``token``, ``client()``; and its insides: ``app``,
    ``authz``, ``policy_dir``."""

    def __init__(self, root: Path, token: str = "test-token", **settings):
        self.database_url = f"sqlite:///{root / 'authz.db'}"
        self.token = token
        self.policy_dir = root / "policy"
        self.snapshots = root / "snapshots"
        self.settings = config.load(database=self.database_url, tokens=token, policy_dir=str(self.policy_dir),
                                    decision_log_flush_s=FLUSH_INTERVAL_S, **settings)
        self.app = None
        self.db = None

    def start(self) -> InProcessServer:
        from audience_authz.http.app import create_app

        _copy_fixture_policy(self.policy_dir)
        # no file watcher: the policy changes only when a test reloads it
        self.app = create_app(self.settings, policy_snapshots=self.snapshots, policy_poll=0)
        self.db = database.obj
        self.test_client = self.app.test_client()
        self.bind()
        return self

    def bind(self) -> None:
        """Point the models at this app's database again (a test may have bound them to
        another; the decision rows buffered are this app's, and are written only while the
        models point here: no timer fires during a test, and each test ends with ``settle``)."""
        if database.obj is not self.db:
            database.initialize(self.db)

    def settle(self) -> None:
        """Write the decision rows still buffered (the end of a test: nothing is left to a
        timer that might fire while another test has the models bound elsewhere)."""
        self.bind()
        decision_log.writer.flush()
        assert decision_log.writer.pending() == 0

    @property
    def authz(self):
        """The app's authorizer (its ``policy`` and ``shadow`` may be swapped by a test that
        puts them back)."""
        return self.app.extensions["authz"]

    def restore_policy(self) -> None:
        """The fixture policy back in ``policy_dir``, and in force."""
        _copy_fixture_policy(self.policy_dir)
        result = self.app.extensions["policy_reloader"].reload("test")
        assert result.status in ("loaded", "unchanged"), result.body()

    def connections_in_use(self) -> int:
        return len(self.db._in_use)  # playhouse.pool's own count of connections lent out

    def stop(self) -> None:
        if self.app is None:
            return
        self.settle()
        assert self.connections_in_use() == 0
        db.close()

    def client(self, token: str | None = None) -> InProcessApi:
        return InProcessApi(self, token or self.token)

    @property
    def base_url(self):
        raise AttributeError(_NO_PROCESS.format("address"))

    @property
    def log_path(self):
        raise AttributeError(_NO_PROCESS.format("log file"))

    def __enter__(self) -> InProcessServer:
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class InProcessApi(BaseApi):
    """The client of an ``InProcessServer``: each call is one request through Flask's test
    client (the whole app: auth, validation, handlers, teardown)."""

    def __init__(self, server: InProcessServer, token: str | None):
        self.server = server
        self.token = token

    def send(self, method: str, path: str, headers: dict, **kwargs) -> Response:
        if self.token is not None:
            headers = {"Authorization": f"Bearer {self.token}", **headers}
        self.server.bind()
        r = self.server.test_client.open(path, method=method, headers=headers, **kwargs)
        try:
            data = r.get_data()
            return Response(r.status_code, _body(data, data.decode("utf-8", "replace")), dict(r.headers))
        finally:
            r.close()
            # a background flush of the batched decision log (at FLUSH_ROWS) holds a connection
            # of its own, not the request's: let it end before counting
            from audience_authz.engine.decision_log import writer
            with writer._flush_lock:
                pass
            in_use = self.server.connections_in_use()
            assert in_use == 0, f"{method} {path} left {in_use} database connection(s) in use"

    def with_token(self, token: str | None) -> InProcessApi:
        return InProcessApi(self.server, token)

    @property
    def base_url(self):
        raise AttributeError(_NO_PROCESS.format("address"))


def _copy_fixture_policy(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)
    shutil.copytree(FIXTURE_POLICY, directory, ignore=shutil.ignore_patterns("__pycache__"))

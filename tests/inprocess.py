"""The service in this process (Flask's test client), for tests that also look inside it:
the same app as `serve` builds, on a SQLite file and a copy of the shipped policy of its own.

The app's blueprints are module-level, so a process builds the app once: ``service()``
gives every test the same one. A test that edits ``policy_dir`` puts it back
(``restore_policy``) before it ends."""

from __future__ import annotations

import json as jsonlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from audience_authz import config
from audience_authz.http.app import create_app
from audience_authz.store import models
from tests.support import ROOT, Api, Response

TOKEN = "inprocess-token"


class ClientApi(Api):
    """``tests.support.Api`` over a Flask test client instead of HTTP."""

    def __init__(self, app):
        self.app = app
        self.client = app.test_client()

    def call(self, method: str, path: str, json=None, account: str | None = None, **kwargs) -> Response:
        headers = {"Authorization": f"Bearer {TOKEN}", **kwargs.pop("headers", {})}
        if account is not None:
            headers["X-Account-Id"] = account
        r = self.client.open(path, method=method, json=json, headers=headers)
        try:
            body = jsonlib.loads(r.get_data(as_text=True))
        except ValueError:
            body = r.get_data(as_text=True)
        return Response(r.status_code, body, dict(r.headers))


@dataclass
class Service:
    app: object
    api: ClientApi
    policy_dir: Path
    database: object  # the app's peewee database (another test's db.init may repoint the proxy)

    @property
    def authz(self):
        return self.app.extensions["authz"]

    def restore_policy(self) -> None:
        """The shipped policy back in ``policy_dir``, and in force."""
        shutil.rmtree(self.policy_dir)
        shutil.copytree(ROOT / "policy", self.policy_dir, ignore=shutil.ignore_patterns("__pycache__"))
        result = self.app.extensions["policy_reloader"].reload("test")
        assert result.status in ("loaded", "unchanged"), result.body()


_service: Service | None = None


def service() -> Service:
    """This process's in-process service (built on first use)."""
    global _service
    if _service is None:
        root = Path(tempfile.mkdtemp(prefix="audience-authz-inprocess-"))
        policy_dir = root / "policy"
        shutil.copytree(ROOT / "policy", policy_dir, ignore=shutil.ignore_patterns("__pycache__"))
        settings = config.load(database=f"sqlite:///{root / 'authz.db'}", tokens=TOKEN,
                               policy_dir=str(policy_dir), rate_limit="off")
        app = create_app(settings, policy_snapshots=root / "snapshots", policy_poll=0)
        _service = Service(app, ClientApi(app), policy_dir, models.database.obj)
    elif models.database.obj is not _service.database:  # e.g. a CLI run in this process chose another
        models.database.initialize(_service.database)
    return _service

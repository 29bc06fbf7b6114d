"""What the in-process tier relies on, shown on the app itself: every request gives its
database connection back (app.py's teardown), whatever it answers; decisions of
/v1/authorize wait in the decision log's buffer (engine/decision_log.py) until the feed is
read, which writes them first; an action's decision is written in its own transaction."""

from __future__ import annotations

import sqlite3
from urllib.parse import urlparse

from audience_authz.engine import decision_log
from audience_authz.store.models import database
from tests.support import last_id, world_factory


def _stored_decisions(server) -> set[str]:
    with sqlite3.connect(urlparse(server.database_url).path) as conn:
        return {row[0] for row in conn.execute("SELECT decision_id FROM decision_log")}


def test_every_request_gives_its_connection_back(service):
    api = service.client()
    w = world_factory(api)
    calls = [  # (request, expected status): answers, denies, 404, 400, 405, 401
        (lambda: api.authorize(w.recipient, "share", w.A, target_account_id=w.peer), 200),
        (lambda: api.post(f"/v1/audiences/{w.A}/shares", {"account_ids": [w.peer]}, account=w.recipient), 403),
        (lambda: api.get(f"/v1/ad-groups/nope_{w.u}", account=w.owner), 404),
        (lambda: api.post("/v1/authorize", {"principal": "x"}), 400),
        (lambda: api.call("PATCH", "/v1/authorize", json={}), 405),
        (lambda: api.with_token("wrong").get("/v1/events"), 401),
        (lambda: api.get("/readyz"), 200),
    ]
    for call, status in calls:
        assert call().status == status
        assert service.connections_in_use() == 0  # also checked by every call of the harness
    # the count is real: a connection lent to this thread shows, and goes when closed
    service.bind()
    database.connect(reuse_if_open=True)
    assert service.connections_in_use() == 1
    database.close()
    assert service.connections_in_use() == 0


def test_authorize_rows_are_batched_and_the_feed_writes_them_before_it_reads(service):
    api = service.client()
    w = world_factory(api)
    start = last_id(api, "decisions")
    assert decision_log.writer.pending() == 0
    asked = [api.ok(api.authorize(w.owner, action, w.A))["decision_id"] for action in ("view", "edit", "share")]
    assert decision_log.writer.pending() == 3
    assert not set(asked) & _stored_decisions(service)  # answered, not yet written
    page = api.ok(api.get(f"/v1/decisions?after={start}&limit=1000"))
    assert [d["decision_id"] for d in page["decisions"]] == asked
    assert decision_log.writer.pending() == 0 and set(asked) <= _stored_decisions(service)
    # an action's decision is written with its change, in its transaction: nothing waits
    api.ok(api.post(f"/v1/audiences/{w.A}/shares", {"account_ids": [w.peer]}, account=w.owner), 201)
    assert decision_log.writer.pending() == 0

"""Production serving: graceful shutdown under gunicorn, several instances on one PostgreSQL
database, and pooled connections that go back to the pool."""

from __future__ import annotations

import contextlib
import http.client
import json
import signal
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import psycopg2
import pytest
import requests

from tests.support import Api, LiveServer, _postgres_admin_url, postgres_database, world_factory
from tests.support.ops import json_lines

pytestmark = pytest.mark.full  # server processes: the full tier


def _refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return False
    except OSError:
        return True


def test_sigterm_stops_accepting_and_lets_a_request_in_flight_finish(tmp_path):
    url = f"sqlite:///{tmp_path / 'authz.db'}"
    with LiveServer(url, extra_args=["--workers", "2"]) as live, contextlib.ExitStack() as stack:
        # A batch of 1000 checks whose body arrives slowly, as from a slow client: the
        # request is in a worker, reading its body, when the server is told to stop.
        checks = [{"principal": {"account_id": f"p_{i}"}, "action": "view", "resource": {"audience_id": "aud"}}
                  for i in range(1000)]
        body = json.dumps({"checks": checks}).encode()
        rid = f"slow-{uuid.uuid4().hex}"
        conn = socket.create_connection(("127.0.0.1", live.port), timeout=60)
        stack.callback(conn.close)  # a failed test must not leave the server waiting for the body
        conn.sendall((f"POST /v1/authorize/batch HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      f"Authorization: Bearer {live.token}\r\nContent-Type: application/json\r\n"
                      f"Content-Length: {len(body)}\r\nX-Request-Id: {rid}\r\nConnection: close\r\n\r\n").encode()
                     + body[:len(body) // 2])
        time.sleep(1.0)
        live.process.send_signal(signal.SIGTERM)

        time.sleep(1.0)
        assert live.process.poll() is None, "the server should wait for the request in flight"
        late = ThreadPoolExecutor(1).submit(requests.get, live.base_url + "/healthz", timeout=30)

        conn.sendall(body[len(body) // 2:])
        response = http.client.HTTPResponse(conn)
        response.begin()
        answer = json.loads(response.read())
        assert response.status == 200
        assert len(answer["results"]) == 1000
        assert {r["reasons"][0]["code"] for r in answer["results"]} == {"unknown_principal"}
        assert live.process.wait(30) == 0  # and then it exits cleanly
        assert _refuses_connections(live.port)
        with pytest.raises(requests.ConnectionError):  # a request that came after SIGTERM is not taken
            late.result()
        records = json_lines(live.log_path.read_text())
        signalled = next(i for i, r in enumerate(records) if r["message"] == "Handling signal: term")
        answered = next(i for i, r in enumerate(records) if r.get("request_id") == rid)
        assert answered > signalled and records[answered]["status"] == 200


def _all(api: Api, feed: str) -> list[dict]:
    items, after = [], 0
    while True:
        page = api.ok(api.get(f"/v1/{feed}?after={after}&limit=1000"))
        if not page[feed]:
            return items
        items += page[feed]
        after = page["next_after"]


def test_two_instances_on_one_postgresql_database_stay_consistent():
    with postgres_database() as url:
        one, two = LiveServer(url), LiveServer(url)
        # both start at once on the empty database: one creates the schema, the other waits for it
        starters = [threading.Thread(target=s.start) for s in (one, two)]
        for t in starters:
            t.start()
        for t in starters:
            t.join()
        try:
            a, b = Api(one.base_url, one.token), Api(two.base_url, two.token)
            w = world_factory(a)
            # share on one, see it and stop it on the other
            a.ok(a.post(f"/v1/audiences/{w.A}/shares", {"account_ids": [w.peer]}, account=w.owner), 201)
            shares = b.ok(b.get(f"/v1/audiences/{w.A}/shares", account=w.owner))["shares"]
            assert sorted(s["account_id"] for s in shares) == sorted([w.recipient, w.peer])
            assert b.ok(b.get(f"/v1/audiences/{w.A}", account=w.peer))["relation"] == "recipient"
            b.ok(b.delete(f"/v1/audiences/{w.A}/shares/{w.peer}", account=w.owner))
            assert a.ok(a.authorize(w.peer, "view", w.A))["reasons"][0]["code"] == "no_access"

            # the same shares raced through both instances: each is made exactly once
            targets = [w.id(f"t{i}") for i in range(6)]
            for target in targets:
                a.ok(a.put(f"/v1/accounts/{target}", {"name": target, "business_center_id": w.bc}))
            with ThreadPoolExecutor(8) as pool:
                raced = {(target, api is a): pool.submit(
                    api.post, f"/v1/audiences/{w.B}/shares", {"account_ids": [target]}, account=w.owner)
                    for target in targets for api in (a, b)}
            for target in targets:
                outcomes = sorted(raced[(target, side)].result().status for side in (True, False))
                assert outcomes == [201, 403], (target, outcomes)

            # one feed, in order, without duplicates, whichever instance serves it
            events_a, events_b = _all(a, "events"), _all(b, "events")
            assert events_a == events_b
            ids = [e["id"] for e in events_a]
            assert ids == sorted(set(ids))
            shared = [e["account_id"] for e in events_a if e["type"] == "share_created" and e["audience_id"] == w.B]
            assert sorted(shared) == sorted([w.recipient, *targets])
            peer_a = [e["type"] for e in events_a if e["audience_id"] == w.A and e["account_id"] == w.peer
                      and e["type"] in ("share_created", "end_share")]
            assert peer_a == ["share_created", "end_share"]
            assert _all(a, "decisions") == _all(b, "decisions")
        finally:
            one.stop()
            two.stop()


def _connections_to(database_url: str) -> int:
    name = database_url.rsplit("/", 1)[1]
    with psycopg2.connect(_postgres_admin_url()) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,))
        return cur.fetchone()[0]


def test_postgresql_connections_go_back_to_the_pool():
    with postgres_database() as url, LiveServer(url, extra_args=["--threads", "8"],
                                                env={"AUDIENCE_AUTHZ_DB_POOL_SIZE": "2"}) as live:
        api, stranger = Api(live.base_url, live.token), Api(live.base_url, "not-a-token")
        w = world_factory(api)
        calls = [  # (request, expected status): answers, denies, 404, 400, 401
            (lambda: api.authorize(w.recipient, "share", w.A, target_account_id=w.peer), 200),
            (lambda: api.get(f"/v1/audiences/{w.A}", account=w.recipient), 200),
            (lambda: api.post(f"/v1/audiences/{w.A}/shares", {"account_ids": [w.peer]}, account=w.recipient), 403),
            (lambda: api.get(f"/v1/ad-groups/nope_{w.u}", account=w.owner), 404),
            (lambda: api.post("/v1/authorize", {"principal": "x"}), 400),
            (lambda: stranger.get("/v1/events"), 401),
        ]
        with ThreadPoolExecutor(8) as pool:
            futures = [(pool.submit(call), status) for _ in range(10) for call, status in calls]
        statuses = [(f.result().status, expected) for f, expected in futures]
        assert all(got == expected for got, expected in statuses), statuses
        assert 1 <= _connections_to(url) <= 2  # never more than the pool holds
        metrics = api.get("/metrics").body
        counted = [line for line in metrics.splitlines()
                   if line.startswith("audience_authz_database_errors_total{") and float(line.rsplit(" ", 1)[1])]
        assert not counted, counted  # every class is exported, at zero

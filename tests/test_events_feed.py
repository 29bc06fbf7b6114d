"""The event feed others subscribe to: filters, the newest id, long poll, a cursor past the
end, no event for a write that changes nothing, and Server-Sent Events that resume exactly
(Last-Event-ID) across a server restart. The feed's reads run in process (and on a live
PostgreSQL server in the full tier); the long poll, the streams and the client on live
servers (full tier)."""

from __future__ import annotations

import json
import threading
import time

import pytest
import requests

from audience_authz_client import AuthzClient
from tests.support import Api, BaseApi, LiveServer, world_factory


def _events(api: BaseApi, query: str) -> dict:
    return api.ok(api.get(f"/v1/events?{query}"))


def test_filters_by_account_audience_and_type(api):
    start = api.ok(api.get("/v1/events/latest"))["id"]
    w = world_factory(api)
    everything = _events(api, f"after={start}&limit=1000")["events"]
    by_audience = _events(api, f"after={start}&audience_id={w.B}")["events"]
    assert by_audience == [e for e in everything if e["audience_id"] == w.B]
    assert [e["type"] for e in by_audience] == ["audience_created", "share_created"]
    by_account = _events(api, f"after={start}&account_id={w.recipient}")["events"]
    assert by_account == [e for e in everything if e["account_id"] == w.recipient] and by_account
    two_types = _events(api, f"after={start}&type=share_created&type=terms_accepted")["events"]
    assert two_types == [e for e in everything if e["type"] in ("share_created", "terms_accepted")]
    both = _events(api, f"after={start}&audience_id={w.A}&type=share_created")["events"]
    assert [(e["type"], e["account_id"]) for e in both] == [("share_created", w.recipient)]
    assert api.get("/v1/events?type=no_such_type").status == 400


def test_the_newest_id_and_a_cursor_past_the_end(api):
    w = world_factory(api)
    latest = api.ok(api.get("/v1/events/latest"))["id"]
    page = _events(api, f"after={latest - 1}")
    assert page["events"][-1]["id"] == latest and page["events"][-1]["audience_id"] == w.C
    assert _events(api, f"after={latest}") == {"events": [], "next_after": latest}
    past = api.get(f"/v1/events?after={latest + 1000}")
    assert past.status == 400 and past.body["error"]["code"] == "cursor_past_end"
    assert str(latest) in past.body["error"]["message"]
    stream = api.get(f"/v1/events/stream?after={latest + 1000}")
    assert stream.status == 400 and stream.body["error"]["code"] == "cursor_past_end"


def test_a_filtered_page_moves_the_cursor_past_what_it_looked_at(api):
    start = api.ok(api.get("/v1/events/latest"))["id"]
    world_factory(api)
    latest = api.ok(api.get("/v1/events/latest"))["id"]
    page = _events(api, f"after={start}&audience_id=aud_matches_nothing")
    assert page == {"events": [], "next_after": latest}


def test_a_write_that_changes_nothing_records_no_event(api):
    w = world_factory(api)
    group = {"name": "g", "include": [w.A], "exclude": [w.B]}
    assert api.ok(api.put(f"/v1/ad-groups/{w.id('ag')}", group, account=w.recipient))["created"] is True
    before = api.ok(api.get("/v1/events/latest"))["id"]
    again = api.ok(api.put(f"/v1/ad-groups/{w.id('ag')}", group, account=w.recipient))
    assert again["created"] is False and again["ad_group"]["include"] == [w.A]
    api.ok(api.put(f"/v1/business-centers/{w.bc}", {"name": "BC", "cross_bc_allowlisted": False}))
    api.ok(api.put(f"/v1/accounts/{w.owner}", {"name": "owner", "business_center_id": w.bc}))
    api.ok(api.post(f"/v1/accounts/{w.owner}/terms-acceptance", account=w.owner))
    assert api.ok(api.get("/v1/events/latest"))["id"] == before
    # a real change still is an event
    api.ok(api.put(f"/v1/ad-groups/{w.id('ag')}", {**group, "exclude": []}, account=w.recipient))
    changed = _events(api, f"after={before}")["events"]
    assert [(e["type"], e["payload"]["exclude"]) for e in changed] == [("ad_group_upserted", [])]


@pytest.mark.full
def test_a_long_poll_answers_as_soon_as_an_event_comes(live_api, live_server):
    api, server = live_api, live_server
    w = world_factory(api)
    latest = api.ok(api.get("/v1/events/latest"))["id"]
    started = time.monotonic()
    assert _events(api, f"after={latest}&wait=1")["events"] == []
    assert 0.9 <= time.monotonic() - started < 5

    def later():
        time.sleep(0.7)
        api.post(f"/v1/audiences/{w.A}/shares", {"account_ids": [w.peer]}, account=w.owner)

    writer = threading.Thread(target=later)
    writer.start()
    started = time.monotonic()
    client = AuthzClient(server.base_url, server.token, timeout=5)
    page = client.events(latest, audience_id=w.A, types=["share_created"], wait=20)
    waited = time.monotonic() - started
    writer.join()
    assert 0.5 < waited < 5  # not the whole 20 s
    assert [(e.type, e.account_id) for e in page.events] == [("share_created", w.peer)]


# -- Server-Sent Events --------------------------------------------------------------------

class Tail(threading.Thread):
    """An SSE consumer as a browser's EventSource is: it reconnects when the stream ends or
    the server is away, sending Last-Event-ID, and keeps every event it is sent."""

    def __init__(self, base_url: str, token: str, after: int):
        super().__init__(daemon=True)
        self.base_url, self.token, self.after = base_url, token, after
        self.received: list[dict] = []
        self.connections = 0
        self.stop = threading.Event()
        self.last_id: str | None = None

    def run(self):
        while not self.stop.is_set():
            headers = {"Authorization": f"Bearer {self.token}"}
            if self.last_id is not None:
                headers["Last-Event-ID"] = self.last_id
            try:
                with requests.get(f"{self.base_url}/v1/events/stream?after={self.after}", headers=headers,
                                  stream=True, timeout=(2, 30)) as response:
                    assert response.status_code == 200, response.text
                    self.connections += 1
                    self._read(response)
            except (requests.RequestException, AssertionError):
                time.sleep(0.1)

    def _read(self, response):
        event = {}
        for line in response.iter_lines(decode_unicode=True):
            if self.stop.is_set():
                return
            if line == "":
                if "data" in event:
                    self.received.append({"sse_id": event.get("id"), "event": event.get("event"),
                                          "data": json.loads(event["data"])})
                    self.last_id = event.get("id", self.last_id)
                event = {}
            elif not line.startswith(":"):
                field, _, value = line.partition(":")
                event[field] = value[1:] if value.startswith(" ") else value


@pytest.mark.full
def test_an_sse_consumer_sees_every_event_once_in_order_across_a_restart(tmp_path):
    live = LiveServer(f"sqlite:///{tmp_path / 'authz.db'}")
    with live:
        api = Api(live.base_url, live.token)
        world_factory(api)  # events before the consumer starts: not its business
        start = api.ok(api.get("/v1/events/latest"))["id"]
        tail = Tail(live.base_url, live.token, start)
        tail.start()
        deadline = time.monotonic() + 10
        while tail.connections == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        w1 = world_factory(api)
        api.ok(api.delete(f"/v1/audiences/{w1.A}/shares/{w1.recipient}", account=w1.owner))
    started = time.monotonic()
    live.start()  # the same database and port; the stream ended with the old server
    assert time.monotonic() - started < 20
    try:
        w2 = world_factory(api)
        api.ok(api.delete(f"/v1/audiences/{w2.B}", account=w2.owner))
        newest = api.ok(api.get("/v1/events/latest"))["id"]
        deadline = time.monotonic() + 20
        while (not tail.received or int(tail.received[-1]["sse_id"]) < newest) and time.monotonic() < deadline:
            time.sleep(0.1)
        tail.stop.set()
        expected = []
        after = start
        while True:
            page = api.ok(api.get(f"/v1/events?after={after}&limit=1000"))
            if not page["events"]:
                break
            expected += page["events"]
            after = page["next_after"]
    finally:
        live.stop()
    assert tail.connections >= 2  # it did reconnect
    got = [(int(e["sse_id"]), e["event"]) for e in tail.received]
    assert got == [(e["id"], e["type"]) for e in expected]  # each once, in order, none missing
    assert [e["data"] for e in tail.received] == expected  # the SSE data is the feed's event
    assert {e["type"] for e in expected} >= {"share_created", "end_share", "audience_deleted"}


@pytest.mark.full
def test_the_python_client_follows_the_stream(live_api, live_server):
    api, server = live_api, live_server
    start = api.ok(api.get("/v1/events/latest"))["id"]
    w = world_factory(api)
    expected = _events(api, f"after={start}&audience_id={w.A}")["events"]
    client = AuthzClient(server.base_url, server.token, timeout=5)
    stream = client.stream_events(start, audience_id=w.A)
    try:
        got = [next(stream) for _ in expected]
        api.ok(api.delete(f"/v1/audiences/{w.A}/shares/{w.recipient}", account=w.owner))
        then = next(stream)  # pushed as it is applied
    finally:
        stream.close()
    assert [(e.id, e.type, e.payload) for e in got] == [(e["id"], e["type"], e["payload"]) for e in expected]
    assert (then.type, then.account_id) == ("end_share", w.recipient) and then.id > got[-1].id

"""The outbox relay (``audience-authz relay``): every committed event on NATS JetStream
exactly once, in commit order, through kill -9 of the relay and of the server, with two
relays at once. Real NATS (AUDIENCE_AUTHZ_TEST_NATS) and real server processes."""

from __future__ import annotations

import random
import threading
import time

import pytest
import requests

from tests.support import Api, LiveServer, free_port, world_factory
from tests.support.relay import Relay, delete_stream, nats_url, stream_messages, unique_names, wait_for_stream
from tests.support.reliability import DATABASES, TOKEN, fresh_database, kill_hard, size

pytestmark = pytest.mark.full  # server processes and a broker: the full tier


@pytest.fixture
def nats():
    return nats_url()


@pytest.fixture
def names(nats):
    stream, prefix = unique_names()
    yield stream, prefix
    delete_stream(nats, stream)


def feed(api: Api) -> list[dict]:
    """Every event of the feed (GET /v1/events), oldest first."""
    after, items = 0, []
    while True:
        page = api.ok(api.get(f"/v1/events?after={after}&limit=1000"))
        items += page["events"]
        if not page["events"]:
            return items
        after = page["next_after"]


def expected_subject(prefix: str, event: dict) -> str:
    account = event["account_id"]
    return f"{prefix}.{event['type']}.{'~' if account is None else account.replace('.', '%2E')}"


def assert_exactly_the_feed(messages: list[dict], events: list[dict], prefix: str) -> None:
    published = [int(m["msg_id"]) for m in messages]
    assert len(published) == len(set(published)), "an event was published twice"
    assert published == [e["id"] for e in events], "the stream is not the committed events in commit order"
    assert [m["body"] for m in messages] == events
    assert [m["subject"] for m in messages] == [expected_subject(prefix, e) for e in events]


class Writers:
    """Threads creating audiences (one event each) against whichever server is up."""

    def __init__(self, base_url: str, owner: str, threads: int = 2):
        self.base_url, self.owner, self.stop = base_url, owner, threading.Event()
        self.answered = 0
        self.threads = [threading.Thread(target=self.write, args=(n,), daemon=True) for n in range(threads)]

    def write(self, n: int) -> None:
        session = requests.Session()
        session.headers.update({"Authorization": f"Bearer {TOKEN}", "X-Account-Id": self.owner})
        i = 0
        while not self.stop.is_set():
            i += 1
            try:
                r = session.post(self.base_url + "/v1/audiences", timeout=10,
                                 json={"id": f"w{n}-{i}-{self.owner}", "name": "w", "source": "website_traffic"})
                self.answered += r.status_code == 201
            except requests.RequestException:  # the server was killed: try the next one
                time.sleep(0.2)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(30)


@pytest.mark.parametrize("kind", DATABASES)
def test_relay_publishes_each_committed_event_once_in_order(kind, tmp_path, nats, names):
    stream, prefix = names
    with fresh_database(kind, tmp_path) as url, LiveServer(url, token=TOKEN) as live:
        api = Api(live.base_url, TOKEN)
        w = world_factory(api)
        dotted = f"acct.{w.u}"  # an account id with '.', which a subject token cannot hold
        api.ok(api.put(f"/v1/accounts/{dotted}", {"name": "dotted", "business_center_id": w.bc}))
        port = free_port()
        with Relay(url, nats, stream, prefix, ["--metrics-port", str(port)]) as relay:
            events = feed(api)
            assert any(e["account_id"] == dotted for e in events)
            assert_exactly_the_feed(wait_for_stream(nats, stream, events[-1]["id"], [relay]), events, prefix)
            # events committed while it runs follow, in order
            for n in range(5):
                api.ok(api.post("/v1/audiences", {"id": f"more{n}_{w.u}", "name": "m", "source": "engagement"},
                                account=w.owner), 201)
            events = feed(api)
            assert_exactly_the_feed(wait_for_stream(nats, stream, events[-1]["id"], [relay]), events, prefix)
            metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert "audience_authz_relay_lag_events 0.0" in metrics
        assert f"audience_authz_relay_published_total {float(len(events))}" in metrics
        assert 'audience_authz_relay_errors_total{stage="broker"} 0.0' in metrics
        # a new relay on the same stream publishes nothing again
        with Relay(url, nats, stream, prefix) as again:
            time.sleep(2)
            assert again.process.poll() is None, again.output()
        assert_exactly_the_feed(stream_messages(nats, stream), events, prefix)


@pytest.mark.parametrize("kind", DATABASES)
def test_two_relays_racing_from_the_same_position_publish_each_event_once(kind, tmp_path, nats, names):
    stream, prefix = names
    with fresh_database(kind, tmp_path) as url, LiveServer(url, token=TOKEN) as live:
        api = Api(live.base_url, TOKEN)
        w = world_factory(api)
        for n in range(40):
            api.ok(api.post("/v1/audiences", {"id": f"r{n}_{w.u}", "name": "r", "source": "engagement"},
                            account=w.owner), 201)
        events = feed(api)
        relays = [Relay(url, nats, stream, prefix, []) for _ in range(2)]
        for r in relays:  # both read an empty stream, then both publish the same backlog
            r.env["AUDIENCE_AUTHZ_RELAY_BATCH"] = "7"
            r.start()
        try:
            messages = wait_for_stream(nats, stream, events[-1]["id"], relays)
        finally:
            for r in relays:
                r.stop()
        assert_exactly_the_feed(messages, events, prefix)


@pytest.mark.parametrize("kind", DATABASES)
def test_relays_and_server_killed_at_random_points(kind, tmp_path, nats, names):
    """Two relays and a server, each killed with SIGKILL at random moments while actions
    run; then a fresh relay catches up. The stream holds every committed event once, in
    commit order, and nothing a killed transaction rolled back (the feed is the truth)."""
    stream, prefix = names
    rounds = size("rounds", 6)
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    with fresh_database(kind, tmp_path) as url:
        live = LiveServer(url, token=TOKEN, extra_args=["--workers", "2"]).start()
        api = Api(live.base_url, TOKEN)
        w = world_factory(api)
        relays = [Relay(url, nats, stream, prefix).start() for _ in range(2)]
        kills = []
        try:
            writers = Writers(live.base_url, w.owner)
            with writers:
                for _ in range(rounds):
                    time.sleep(rng.uniform(0.05, 1.0))
                    victim = rng.choice(["server", "relay0", "relay1"])
                    kills.append(victim)
                    if victim == "server":
                        kill_hard(live)
                        # a start under the writers' load on a shared machine can take long
                        live = LiveServer(url, token=TOKEN, extra_args=["--workers", "2"], startup_s=120).start()
                        writers.base_url = live.base_url
                    else:
                        n = int(victim[-1])
                        relays[n].kill_hard()
                        relays[n] = Relay(url, nats, stream, prefix).start()
            assert writers.answered > 0
            for r in relays:
                r.kill_hard()
            api = Api(live.base_url, TOKEN)
            events = feed(api)
            with Relay(url, nats, stream, prefix) as fresh:
                messages = wait_for_stream(nats, stream, events[-1]["id"], [fresh])
        finally:
            for r in relays:
                if r.process.poll() is None:
                    r.kill_hard()
            live.stop()
        print(f"\nRELAY KILLS {kind} (seed {seed}): {kills}; {len(events)} events, {writers.answered} answered")
        assert_exactly_the_feed(messages, events, prefix)


def test_a_relay_that_cannot_reach_nats_says_so_and_exits(tmp_path):
    """Fail loudly, not wait silently: a wrong --nats is an error within seconds."""
    import subprocess
    import sys

    from tests.support import ROOT

    url = f"sqlite:///{tmp_path / 'r.db'}"
    subprocess.run([sys.executable, "-m", "audience_authz", "migrate", "--database", url], cwd=ROOT, check=True,
                   capture_output=True)
    run = subprocess.run([sys.executable, "-m", "audience_authz", "relay", "--database", url,
                          "--nats", f"nats://127.0.0.1:{free_port()}"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 1
    assert "cannot reach NATS JetStream" in run.stderr

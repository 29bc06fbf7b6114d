"""Readers tailing ``GET /v1/decisions`` and ``GET /v1/events`` by their cursors while many
writers authorize and act miss no committed row and see none twice (docs/reliability.md,
"The decisions feed reads only settled ids"): a live server with two workers, whose
batched flushes and action transactions commit in another order than they took their
ids, on both databases (full tier)."""

from __future__ import annotations

import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg2
import pytest

from tests.support import Api, LiveServer, postgres_database, world_factory

TOKEN = "cursor-token"


def _table_ids(database: str, url: str, path, table: str) -> list[int]:
    if database == "sqlite":
        conn = sqlite3.connect(path)
        ids = [r[0] for r in conn.execute(f"SELECT id FROM {table} ORDER BY id")]
        conn.close()
        return ids
    conn = psycopg2.connect(url)
    with conn.cursor() as cur:
        cur.execute(f"SELECT id FROM {table} ORDER BY id")
        ids = [r[0] for r in cur.fetchall()]
    conn.close()
    return ids


@pytest.mark.full
@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_tailers_of_the_feeds_skip_nothing_and_repeat_nothing(database, tmp_path):
    def run(url: str) -> None:
        with LiveServer(url, token=TOKEN, extra_args=["--workers", "2", "--threads", "8"]) as live:
            api = Api(live.base_url, TOKEN)
            w = world_factory(api)
            done = threading.Event()
            seen: dict[str, list[int]] = {"decisions": [], "events": []}
            cursors = {"decisions": 0, "events": 0}

            failures: list[str] = []

            def tail(feed: str) -> None:
                try:
                    follow(feed)
                except Exception as exc:  # noqa: BLE001 - reported by the test below
                    failures.append(f"{feed}: {exc!r}")

            def follow(feed: str) -> None:
                reader = Api(live.base_url, TOKEN)
                while True:
                    finished = done.is_set()
                    page = reader.ok(reader.get(f"/v1/{feed}?after={cursors[feed]}&limit=1000"))
                    seen[feed].extend(d["id"] for d in page[feed])
                    cursors[feed] = page["next_after"]
                    if finished and not page[feed]:
                        return

            def write(job) -> int:
                client = Api(live.base_url, TOKEN)
                if job[0] == "create":  # an action: its decision row and its event in one transaction
                    return client.post("/v1/audiences", {"id": job[1], "name": "tailed", "source": "engagement"},
                                       account=w.owner).status
                return client.authorize(job[1], job[2], w.A).status

            jobs = [("check", account, action) for account in (w.owner, w.recipient, w.peer, w.other)
                    for action in ("view", "edit", "apply", "share")] * 100
            jobs[::8] = [("create", f"{w.u}_tailed_{i}") for i in range(len(jobs[::8]))]
            tailers = [threading.Thread(target=tail, args=(feed,)) for feed in seen]
            for t in tailers:
                t.start()
            with ThreadPoolExecutor(12) as pool:
                statuses = list(pool.map(write, jobs))
            assert set(statuses) <= {200, 201}, statuses
            time.sleep(1)  # the batches still buffered are written by the background flush
            done.set()
            for t in tailers:
                t.join(120)
                assert not t.is_alive()
            assert failures == []
            stored = {"decisions": _table_ids(database, url, tmp_path / "cursor.db", "decision_log"),
                      "events": _table_ids(database, url, tmp_path / "cursor.db", "event")}
        assert len(stored["decisions"]) >= len(jobs) and len(stored["events"]) >= len(jobs) // 8
        for feed, rows in stored.items():
            read = [i for i in rows if i <= cursors[feed]]
            skipped = sorted(set(read) - set(seen[feed]))
            duplicated = len(seen[feed]) - len(set(seen[feed]))
            assert (skipped, duplicated) == ([], 0), \
                f"{feed}: {len(skipped)} skipped of {len(read)}, {duplicated} duplicated"
            assert cursors[feed] == rows[-1]  # and the tailer caught up with every row

    if database == "sqlite":
        run(f"sqlite:///{tmp_path / 'cursor.db'}")
    else:
        with postgres_database() as url:
            run(url)

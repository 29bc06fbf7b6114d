"""Reads made of several statements see one snapshot on PostgreSQL: lists and views never
fail because a writer committed between their statements (the review saw 56 of 318 lists
answer 500 with two writers creating and sharing audiences to the listed account)."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from tests.support.reliability import TOKEN, private_server, size

pytestmark = pytest.mark.full  # server processes: the full tier


def test_lists_and_views_read_one_snapshot_while_writers_commit(tmp_path):
    seconds = size("snapshot_seconds", 15)
    with private_server("postgresql", tmp_path, extra_args=["--workers", "2"]) as (url, live, api):
        api.ok(api.put("/v1/business-centers/bc", {"name": "bc"}))
        owners = [f"owner{i}" for i in range(2)]
        for account in (*owners, "listed"):
            api.ok(api.put(f"/v1/accounts/{account}", {"name": account, "business_center_id": "bc"}))
        for owner in owners:
            api.ok(api.post(f"/v1/accounts/{owner}/terms-acceptance", account=owner))
        stop = time.monotonic() + seconds
        tally = {"writes": 0, "reads": 0}
        errors: list[str] = []
        lock = threading.Lock()

        def call(session, method, path, account, body=None):
            r = session.request(method, live.base_url + path, json=body, timeout=60,
                                headers={"Authorization": f"Bearer {TOKEN}", "X-Account-Id": account})
            if r.status_code >= 500:
                with lock:
                    errors.append(f"{method} {path}: {r.status_code} {r.text[:300]}")
            return r

        def writer(owner):
            session, n = requests.Session(), 0
            while time.monotonic() < stop:
                n += 1
                made = call(session, "POST", "/v1/audiences", owner,
                            {"id": f"{owner}_{n}", "name": "a", "source": "customer_file"})
                shared = call(session, "POST", f"/v1/audiences/{owner}_{n}/shares", owner,
                              {"account_ids": ["listed"]})
                assert made.status_code == 201 and shared.status_code == 201, (made.text, shared.text)
                if n % 3 == 0:  # and stop some, so the list also loses entries
                    call(session, "DELETE", f"/v1/audiences/{owner}_{n - 1}/shares/listed", owner)
                with lock:
                    tally["writes"] += 1

        def reader(paged):
            session = requests.Session()
            while time.monotonic() < stop:
                after, seen = None, []
                while True:
                    query = f"?limit={7 if paged else 1000}" + (f"&after={after}" if after else "")
                    r = call(session, "GET", f"/v1/accounts/listed/audiences{query}", "listed")
                    if r.status_code != 200:
                        break
                    page = r.json()
                    seen += [a["id"] for a in page["audiences"]]
                    after = page["next_after"]
                    if after is None:
                        break
                assert len(seen) == len(set(seen)), "a page repeated an audience"
                if seen:
                    owner = seen[-1].rsplit("_", 1)[0]
                    call(session, "GET", f"/v1/audiences/{seen[-1]}/shares", owner)
                    call(session, "GET", f"/v1/audiences/{seen[-1]}", "listed")
                with lock:
                    tally["reads"] += 1

        threads = [threading.Thread(target=writer, args=(o,)) for o in owners]
        threads += [threading.Thread(target=reader, args=(paged,)) for paged in (False, True)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print(f"\nSNAPSHOT postgresql: {seconds}s, {tally['writes']} writes, {tally['reads']} full lists,"
              f" {len(errors)} errors")
        assert tally["writes"] > 10 and tally["reads"] > 10, tally
        assert errors == [], errors[:5]

"""Metrics at /metrics and the /docs page (in process, and on a live PostgreSQL server in the
full tier); request ids and JSON logs as a server process writes them, metrics across
gunicorn workers (live servers, full tier)."""

from __future__ import annotations

import json
import os
import re
import signal
import time
import uuid
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support import Api, BaseApi, LiveServer, world_factory
from tests.support.ops import break_decisions, broken_decision_answer, json_lines


def scrape(api: BaseApi) -> dict[tuple, float]:
    """{(sample name, sorted labels without pid): value}, summed over label sets that differ only by pid."""
    response = api.get("/metrics")
    assert response.status == 200, response.body
    assert response.headers["Content-Type"].startswith("text/plain")
    samples: dict[tuple, float] = {}
    for family in text_string_to_metric_families(response.body):
        for sample in family.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "pid"))
            samples[(sample.name, labels)] = samples.get((sample.name, labels), 0.0) + sample.value
    return samples


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def access_lines(log_path: Path) -> list[dict]:
    return [r for r in json_lines(log_path.read_text()) if r.get("logger") == "audience_authz.access"]


def test_metrics_count_decisions_effects_and_latency(api):
    w = world_factory(api)
    api.ok(api.put(f"/v1/ad-groups/{w.ag}", {"name": "g", "include": [w.A]}, account=w.recipient))
    before = scrape(api)
    denied = api.ok(api.authorize(w.recipient, "share", w.A, target_account_id=w.peer))
    assert denied["decision"] == "deny"
    stopped = api.ok(api.delete(f"/v1/audiences/{w.A}/shares/{w.recipient}", account=w.owner))
    after = scrape(api)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("audience_authz_decisions_total", action="share", decision="deny",
                 reason="reshare_forbidden") == 1
    assert delta("audience_authz_decisions_total", action="stop_sharing", decision="allow",
                 reason="owner_stop_sharing") == 1
    applied = {}
    for effect in stopped["effects"]:
        applied[effect["type"]] = applied.get(effect["type"], 0) + 1
    assert applied["disconnect_audience"] == 1 and applied["end_share"] == 1
    for type_, count in applied.items():
        assert delta("audience_authz_effects_applied_total", type=type_) == count
    assert delta("audience_authz_request_duration_seconds_count", method="POST", endpoint="/v1/authorize",
                 status="200") == 1
    assert delta("audience_authz_request_duration_seconds_count", method="DELETE",
                 endpoint="/v1/audiences/<id>/shares/<account_id>", status="200") == 1
    assert delta("audience_authz_request_duration_seconds_sum", method="POST", endpoint="/v1/authorize",
                 status="200") > 0
    assert value(after, "audience_authz_policy_info", version=denied["policy_version"]) == 1
    assert ("audience_authz_policy_reload_failures_total", ()) in after


def test_metrics_need_the_token_and_the_docs_page_opens_in_a_browser(api):
    anonymous = api.with_token(None)  # a browser sends no token; the page holds the API's description, no data
    assert anonymous.get("/metrics").status == 401
    page = anonymous.get("/docs")
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    assert '"/v1/authorize"' in page.body and '"/v1/audiences/{id}/shares"' in page.body
    scripts = re.findall(r'src="([^"]+)"', page.body) + re.findall(r'href="([^"]+\.css)"', page.body)
    assert scripts
    for src in scripts:  # served by the service itself, nothing from the internet
        assert src.startswith("/docs/static/")
        asset = anonymous.get(src)
        assert asset.status == 200 and len(asset.body) > 1000


@pytest.mark.full
def test_request_id_round_trips_into_json_access_logs(live_api, live_server):
    api, server = live_api, live_server
    w = world_factory(api)
    rid = f"req-{uuid.uuid4().hex}"
    given = api.get(f"/v1/audiences/{w.A}", account=w.recipient, headers={"X-Request-Id": rid})
    assert given.status == 200 and given.headers["X-Request-Id"] == rid
    made = api.get(f"/v1/audiences/{w.A}/shares", account=w.recipient)  # a deny: 403 not_owner
    assert made.status == 403 and re.fullmatch(r"[0-9a-f]{32}", made.headers["X-Request-Id"])
    odd = api.get("/healthz", headers={"X-Request-Id": "spaces are not an id " + "x" * 200})
    assert re.fullmatch(r"[0-9a-f]{32}", odd.headers["X-Request-Id"])
    # a path holding U+2028 and U+0085 (line ends to str.splitlines) is still one log line
    odd_path = api.get("/v1/audiences/a%E2%80%A8b%C2%85c", account=w.recipient, headers={"X-Request-Id": rid + "-ls"})
    assert odd_path.status == 400
    unauthenticated = requests.get(server.base_url + "/v1/events", headers={"X-Request-Id": rid + "-401"},
                                   timeout=10)
    assert unauthenticated.status_code == 401 and unauthenticated.headers["X-Request-Id"] == rid + "-401"

    deadline = time.monotonic() + 10
    while True:  # every line of the server's output is a JSON object
        lines = {r.get("request_id"): r for r in access_lines(server.log_path)}
        if made.headers["X-Request-Id"] in lines and rid + "-401" in lines or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    line = lines[rid]
    assert line["method"] == "GET" and line["path"] == f"/v1/audiences/{w.A}" and line["status"] == 200
    assert line["account"] == w.recipient and line["duration_ms"] > 0 and line["level"] == "INFO"
    assert lines[made.headers["X-Request-Id"]]["status"] == 403
    assert lines[rid + "-401"]["status"] == 401 and lines[rid + "-401"]["account"] is None
    assert lines[rid + "-ls"]["path"] == "/v1/audiences/a\u2028b\x85c"
    assert server.token not in server.log_path.read_text()  # the token is never logged


@pytest.mark.full
def test_a_database_error_is_counted_logged_with_its_request_id_and_denies(empty_database):
    with LiveServer(empty_database) as live:
        api = Api(live.base_url, live.token)
        w = world_factory(api)
        break_decisions(empty_database)
        rid = f"req-{uuid.uuid4().hex}"
        failed = api.post("/v1/authorize", {"principal": {"account_id": w.owner}, "action": "edit",
                                            "resource": {"audience_id": w.A}}, headers={"X-Request-Id": rid})
        status, code = broken_decision_answer(empty_database)
        assert failed.status == status and failed.body["decision"] == "deny"
        assert failed.codes == [code] and failed.headers["X-Request-Id"] == rid
        errors = scrape(api)
        counted = {labels: v for (name, labels), v in errors.items()
                   if name == "audience_authz_database_errors_total"}
        assert sum(counted.values()) == 1, counted
        records = [r for r in json_lines(live.log_path.read_text()) if r.get("request_id") == rid]
        error = next(r for r in records if r["level"] == "ERROR")
        assert error["logger"] == "audience_authz" and "audience_share" in json.dumps(error)
        assert any(r.get("status") == status for r in records)


@pytest.mark.full
def test_metrics_add_up_across_gunicorn_workers_and_outlive_a_dead_worker(tmp_path):
    metrics_dir = tmp_path / "metrics"
    url = f"sqlite:///{tmp_path / 'authz.db'}"
    with LiveServer(url, extra_args=["--workers", "2", "--threads", "2"],
                    env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}) as live:
        api = Api(live.base_url, live.token)
        body = {"principal": {"account_id": f"p_{uuid.uuid4().hex[:8]}"}, "action": "view",
                "resource": {"audience_id": "x"}}
        labels = {"action": "view", "decision": "deny", "reason": "unknown_principal"}

        def decide(times: int) -> set[int]:
            rids = []
            for _ in range(times):
                rid = uuid.uuid4().hex
                api.ok(api.post("/v1/authorize", body, headers={"X-Request-Id": rid}))
                rids.append(rid)
            time.sleep(0.2)  # the access line is written after the answer
            by_rid = {r["request_id"]: r["pid"] for r in access_lines(live.log_path)}
            return {by_rid[rid] for rid in rids}

        victim = sorted(decide(10))[0]
        assert value(scrape(api), "audience_authz_decisions_total", **labels) == 10
        assert (metrics_dir / f"gauge_livemax_{victim}.db").exists()
        os.kill(victim, signal.SIGKILL)  # gunicorn starts another worker in its place
        deadline = time.monotonic() + 30
        while (metrics_dir / f"gauge_livemax_{victim}.db").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not (metrics_dir / f"gauge_livemax_{victim}.db").exists(), "the dead worker was not marked dead"

        assert victim not in decide(10)
        after = scrape(api)
        # the dead worker's decisions and the others' add up, whichever worker is scraped
        assert value(after, "audience_authz_decisions_total", **labels) == 20
        versions = [v for (name, _), v in after.items() if name == "audience_authz_policy_info"]
        assert versions == [1.0]

"""From an access-log line to its decisions and back: the decision log stores the request
id, the access line names the decision ids."""

from __future__ import annotations

import time

import pytest

from tests.support import last_id, world_factory
from tests.support.ops import json_lines


def _access_line(server, request_id: str) -> dict:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the line is written as the answer leaves
        for line in json_lines(server.log_path.read_text()):
            if line.get("logger") == "audience_authz.access" and line.get("request_id") == request_id:
                return line
        time.sleep(0.05)
    raise AssertionError(f"no access line for {request_id}")


def _decisions_after(api, after: int) -> list[dict]:
    return api.ok(api.get(f"/v1/decisions?after={after}&limit=1000"))["decisions"]


@pytest.mark.full
def test_a_request_id_leads_to_its_decisions_and_back(live_api, live_server, uid):
    api, server = live_api, live_server  # the access log is the server process's
    w = world_factory(api)
    before = last_id(api, "decisions")
    one = api.post("/v1/authorize", {"principal": {"account_id": w.owner}, "action": "edit",
                                     "resource": {"audience_id": w.A}}, headers={"X-Request-Id": f"one-{uid}"})
    assert one.status == 200 and one.headers["X-Request-Id"] == f"one-{uid}"
    batch = api.post("/v1/authorize/batch", {"checks": [
        {"principal": {"account_id": w.owner}, "action": "view", "resource": {"audience_id": w.B}},
        {"principal": {"account_id": w.peer}, "action": "view", "resource": {"audience_id": w.B}}]},
        headers={"X-Request-Id": f"batch-{uid}"})
    denied = api.post(f"/v1/audiences/{w.A}/shares", {"account_ids": [w.other]}, account=w.owner,
                      headers={"X-Request-Id": f"share-{uid}"})
    assert denied.status == 403
    unnamed = api.post("/v1/authorize", {"principal": {"account_id": w.peer}, "action": "view",
                                         "resource": {"audience_id": w.C}})

    rows = {d["decision_id"]: d for d in _decisions_after(api, before)}
    expected = {f"one-{uid}": [one.body["decision_id"]],
                f"batch-{uid}": [r["decision_id"] for r in batch.body["results"]],
                f"share-{uid}": denied.body["decision_ids"],
                unnamed.headers["X-Request-Id"]: [unnamed.body["decision_id"]]}  # one the service made
    for request_id, decision_ids in expected.items():
        assert _access_line(server, request_id)["decision_ids"] == decision_ids  # access line -> decisions
        assert [rows[d]["request_id"] for d in decision_ids] == [request_id] * len(decision_ids)  # and back
    api.get("/v1/events/latest", headers={"X-Request-Id": f"read-{uid}"})
    assert "decision_ids" not in _access_line(server, f"read-{uid}")  # no decision, no ids

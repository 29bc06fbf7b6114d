"""The work of one request is bounded: a batch of decisions whose checks and planned
effects pass AUDIENCE_AUTHZ_MAX_REQUEST_COST answers 422 at once, instead of holding a
worker; and a batch counts each of its checks in the rate limit."""

from __future__ import annotations

import time

import pytest

from tests.support.api import one_share
from tests.support.reliability import DATABASES, private_server

pytestmark = pytest.mark.full  # server processes: the full tier

GROUPS = 60
CAP = 500


def _stop_check(audience: str) -> dict:
    return {"principal": {"account_id": "owner"}, "action": "stop_sharing", "resource": {"audience_id": audience}}


def _scenario(api) -> None:
    one_share(api)
    for i in range(GROUPS):
        api.ok(api.put(f"/v1/ad-groups/g{i}", {"name": "g", "include": ["A"]}, account="recipient"))


@pytest.mark.parametrize("kind", DATABASES)
def test_a_batch_past_the_cost_cap_answers_422_at_once(kind, tmp_path):
    env = {"AUDIENCE_AUTHZ_MAX_REQUEST_COST": str(CAP)}
    with private_server(kind, tmp_path, env=env) as (url, live, api):
        _scenario(api)
        # each check costs 1, and plans 1 recipient + 60 ad groups: 62 units
        fits = api.post("/v1/authorize/batch", {"checks": [_stop_check("A")] * 8})
        assert fits.status == 200 and len(fits.body["results"]) == 8
        assert fits.body["results"][0]["effect_counts"]["disconnect_audience"] == GROUPS
        started = time.monotonic()
        costly = api.post("/v1/authorize/batch", {"checks": [_stop_check("A")] * 1000})
        assert costly.status == 422 and costly.body["error"]["code"] == "request_too_costly", costly.body
        assert str(CAP) in costly.body["error"]["message"]
        assert time.monotonic() - started < 5
        # without its effects, a check is one unit: what 8 of them filled, 400 do not
        decision_only = api.post("/v1/authorize/batch", {"checks": [{**_stop_check("A"), "include_effects": False}] * 400})
        assert decision_only.status == 200, decision_only.body
        assert {(r["decision"], len(r["effects"])) for r in decision_only.body["results"]} == {("allow", 0)}
        # cheap checks are one unit each
        view = {"principal": {"account_id": "recipient"}, "action": "view", "resource": {"audience_id": "A"}}
        assert api.post("/v1/authorize/batch", {"checks": [view] * 400}).status == 200
        # the cap bounds previews, not the action: the owner can still stop sharing
        stopped = api.ok(api.delete("/v1/audiences/A/shares", account="owner"))
        assert stopped["effect_counts"]["disconnect_audience"] == GROUPS


def test_a_batch_counts_each_check_in_the_rate_limit(tmp_path):
    env = {"AUDIENCE_AUTHZ_RATE_LIMIT": "60/minute"}
    with private_server("sqlite", tmp_path, env=env) as (url, live, api):
        _scenario_checks = [{"principal": {"account_id": "nobody"}, "action": "view",
                             "resource": {"audience_id": "none"}}]
        assert api.post("/v1/authorize/batch", {"checks": _scenario_checks * 50}).status == 200  # 50 of 60
        assert api.get("/v1/events").status == 200  # 51: a single request still fits
        over = api.post("/v1/authorize/batch", {"checks": _scenario_checks * 20})  # 71 > 60
        assert over.status == 429 and over.body["error"]["code"] == "rate_limited"
        assert "20 checks" in over.body["error"]["message"]

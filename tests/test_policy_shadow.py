"""Shadow evaluation: a candidate policy decides every live request too, changing no answer;
its disagreements are counted (metrics), logged with the decision id and summarised by
GET /v1/policy/shadow; `serve --shadow-policy-dir` and PUT/DELETE /v1/policy/shadow set and
clear it; its cost on a decision is bounded."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from audience_authz.engine.policy import Policy
from audience_authz.engine.shadow import Shadow
from tests.support import Api, LiveServer, world_factory
from tests.support.policy import copy_policy, replace

RESHARE_DENY = "p, recipient, share, True, deny, reshare_forbidden,"
RESHARE_ALLOW = "p, recipient, share, True, allow, recipient_may_reshare,"
TOKEN = "shadow-token"


@pytest.mark.full  # a server process, two workers
def test_a_shadow_under_live_load_counts_its_disagreements_and_changes_no_answer(tmp_path):
    candidate = copy_policy(tmp_path / "candidate")
    replace(candidate / "policy.csv", RESHARE_DENY, RESHARE_ALLOW)
    url = f"sqlite:///{tmp_path / 'authz.db'}"
    with LiveServer(url, token=TOKEN, extra_args=["--workers", "2", "--shadow-policy-dir", str(candidate)]) as live:
        api = Api(live.base_url, TOKEN)
        w = world_factory(api)
        asks = ([(w.recipient, "share", w.A, {"target_account_id": w.peer})] * 40
                + [(w.recipient, "view", w.B, {})] * 40 + [(w.owner, "share", w.C, {"target_account_id": w.peer})] * 20)

        def ask(item):
            account, action, audience, context = item
            return api.ok(api.authorize(account, action, audience, **context))

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(ask, asks))
        reshares = [a for (_, action, _, _), a in zip(asks, answers) if action == "share" and a["reasons"]
                    and a["reasons"][0]["code"] == "reshare_forbidden"]
        assert len(reshares) == 40  # every answer is the live policy's
        assert all(a["decision"] == "allow" for (acc, action, _, _), a in zip(asks, answers) if action == "view")
        summary = api.ok(api.get("/v1/policy/shadow"))
        assert summary["active"] and summary["shadow_version"] == Policy.load(candidate).version
        assert summary["disagreements"] == 40 and summary["decisions"] >= 100 and summary["failed"] == 0
        [kind] = summary["by"]
        assert (kind["action"], kind["from"], kind["to"], kind["count"]) == (
            "share", "deny reshare_forbidden", "allow recipient_may_reshare", 40)
        ids = {a["decision_id"] for a in reshares}
        assert kind["decision_ids"] and set(kind["decision_ids"]) <= ids
        metrics = api.get("/metrics").body
        assert ('audience_authz_shadow_disagreements_total{action="share",from="deny reshare_forbidden",'
                f'shadow="{summary["shadow_version"]}",to="allow recipient_may_reshare"}} 40.0') in metrics
        log = live.log_path.read_text()
        logged = [json.loads(line)["message"] for line in log.splitlines()
                  if line.startswith("{") and "disagrees on decision" in line]
        assert len(logged) == 40 and all(any(i in m for i in ids) for m in logged)


def test_the_admin_endpoints_set_and_clear_a_shadow(service):
    api = service.client()
    w = world_factory(api)
    edited = (service.policy_dir / "policy.csv").read_text().replace(RESHARE_DENY, RESHARE_ALLOW)
    try:
        assert api.ok(api.get("/v1/policy/shadow")) == {"active": False, "policy_version": service.authz.policy.version,
                                                         "shadow_version": None}
        bad = api.put("/v1/policy/shadow", {"files": {"policy.csv": edited.replace("allow, recipient_may_reshare", "allw, x")}})
        assert bad.status == 422 and bad.body["error"]["code"] == "policy_refused"
        summary = api.ok(api.put("/v1/policy/shadow", {"files": {"policy.csv": edited}}))
        assert summary["active"] and summary["disagreements"] == 0
        answer = api.ok(api.authorize(w.recipient, "share", w.A, target_account_id=w.peer))
        assert answer["decision"] == "deny"
        api.ok(api.authorize(w.recipient, "view", w.A))
        summary = api.ok(api.get("/v1/policy/shadow"))
        assert summary["disagreements"] == 1 and summary["by"][0]["decision_ids"] == [answer["decision_id"]]
        assert api.put("/v1/policy/shadow", {"candidate_dir": "/no/such/dir"}).status == 400
        assert api.put("/v1/policy/shadow", {}).status == 400
    finally:
        cleared = api.ok(api.delete("/v1/policy/shadow"))
    assert cleared["active"] is False and service.authz.shadow is None


@pytest.mark.full  # timing
def test_a_shadow_costs_at_most_a_third_of_a_decision(service, tmp_path):
    """The time of a decision as served (POST /v1/authorize: facts from the database, the
    policy, the decision log, the answer) with a shadow on is at most 1.3x the time without
    (best of several rounds, the two interleaved)."""
    api = service.client()
    w = world_factory(api)
    candidate = copy_policy(tmp_path / "candidate")
    replace(candidate / "policy.csv", RESHARE_DENY, RESHARE_ALLOW)
    shadow = Shadow(Policy.load(candidate), service.authz.policy.facts_schema)
    asks = [(w.recipient, "share", w.A, {"target_account_id": w.peer}), (w.owner, "view", w.B, {}),
            (w.owner, "share", w.C, {"target_account_id": w.peer})] * 30

    def run(with_shadow: bool) -> float:
        service.authz.shadow = shadow if with_shadow else None
        started = time.perf_counter()
        for account, action, audience, context in asks:
            api.authorize(account, action, audience, **context)
        return time.perf_counter() - started

    try:
        run(True)
        rounds = [(run(False), run(True)) for _ in range(5)]
    finally:
        service.authz.shadow = None
    without, with_ = min(r[0] for r in rounds), min(r[1] for r in rounds)
    assert with_ <= 1.3 * without, (with_, without)
    assert sum(k == ("share", "deny reshare_forbidden", "allow recipient_may_reshare") for k in shadow.examples) == 1

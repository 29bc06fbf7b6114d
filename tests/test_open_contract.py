"""Contracts that can grow: a server whose policy adds a reason code and chooses another
effect argument answers what the OpenAPI document promises, and the shipped client reads
those answers without raising or failing closed (full tier: a live server on a policy of
its own, SQLite and PostgreSQL)."""

from __future__ import annotations

import shutil

import pytest
import requests
from jsonschema import Draft202012Validator

from audience_authz_client import AuthzClient, Denied, PauseAdGroup
from tests.support import LiveServer, world_factory
from tests.support.policy import copy_policy, replace

pytestmark = pytest.mark.full

NEW_CODE = "lookalike_reshare_forbidden"


def _grown_policy(tmp_path):
    """The fixture policy with a deny code of its own (a recipient's re-share of a lookalike)
    and ``disconnect_audience:pause`` instead of ``broaden`` when an owner stops sharing."""
    policy = copy_policy(tmp_path / "policy")
    shutil.rmtree(policy / "tests")  # the fixture's cases are about the fixture, not this policy
    csv = policy / "policy.csv"
    reshare = "p, recipient, share, True, deny, reshare_forbidden,\n"
    replace(csv, reshare, f'p, recipient, share, r.f.audience_type == "lookalike", deny, {NEW_CODE},\n' + reshare)
    stop = "p, owner, stop_sharing, True, allow, owner_stop_sharing, end_share remove_from_list disconnect_audience:"
    replace(csv, stop + "broaden", stop + "pause")
    replace(policy / "reasons.yaml", "  no_matching_rule:",
            f"  {NEW_CODE}: A recipient cannot re-share a lookalike.\n  no_matching_rule:")
    return policy


def _valid(doc: dict, schema: str, body: dict) -> None:
    validator = Draft202012Validator({"$ref": f"#/components/schemas/{schema}", "components": doc["components"]})
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(body)]
    assert not errors, (schema, errors[:5])


def test_a_policys_new_code_and_effect_argument_reach_the_client_and_fit_the_document(empty_database, tmp_path):
    with LiveServer(empty_database, policy_dir=str(_grown_policy(tmp_path))) as live:
        api = live.client()
        w = world_factory(api)
        lookalike = w.id("L")
        api.ok(api.post(f"/v1/audiences/{w.A}/lookalikes", {"id": lookalike, "name": "L"}, account=w.owner), 201)
        api.ok(api.post(f"/v1/audiences/{lookalike}/shares", {"account_ids": [w.recipient]}, account=w.owner), 201)
        api.ok(api.put(f"/v1/ad-groups/{w.id('ag')}", {"name": "g", "include": [lookalike]}, account=w.recipient))
        http = requests.Session()
        http.headers["Authorization"] = f"Bearer {live.token}"
        doc = http.get(f"{live.base_url}/openapi.json", timeout=30).json()

        # the new code: in the raw answers, which the document validates, and through the client
        check = {"principal": {"account_id": w.recipient}, "action": "share",
                 "resource": {"audience_id": lookalike}, "context": {"target_account_id": w.peer}}
        raw = http.post(f"{live.base_url}/v1/authorize", json=check, timeout=30)
        assert raw.status_code == 200 and [r["code"] for r in raw.json()["reasons"]] == [NEW_CODE]
        _valid(doc, "AuthorizeAnswer", raw.json())
        refused = http.post(f"{live.base_url}/v1/audiences/{lookalike}/shares", json={"account_ids": [w.peer]},
                            headers={"X-Account-Id": w.recipient}, timeout=30)
        assert refused.status_code == 403
        _valid(doc, "DenyBody", refused.json())

        with AuthzClient(live.base_url, live.token, timeout=30) as client:
            decision = client.authorize(w.recipient, "share", lookalike, target_account_id=w.peer)
            assert decision.decision == "deny" and decision.codes == [NEW_CODE] and decision.error is None
            denied = client.share(w.recipient, lookalike, [w.peer])
            assert isinstance(denied, Denied) and denied.codes == [NEW_CODE]
            logged = client.decisions(after=0, limit=1000).decisions
            assert NEW_CODE in {r.code for d in logged for r in d.reasons}

            # the effect argument: the recipient's ad group is paused, not broadened
            asked = client.authorize(w.owner, "stop_sharing", lookalike, target_account_id=w.recipient)
            assert asked.allowed and asked.error is None
            stopped = client.stop_sharing(w.owner, lookalike, w.recipient)
            assert not isinstance(stopped, Denied)
            paused = [e for e in stopped.effects if e.type == "pause_ad_group"]
            assert len(paused) == 1 and isinstance(paused[0], PauseAdGroup) and paused[0].ad_group_id == w.id("ag")
            assert client.get_ad_group(w.recipient, w.id("ag")).status == "paused"  # type: ignore[union-attr]
            events = client.events(after=0, limit=1000).events
            assert "pause_ad_group" in {e.type for e in events}
        page = http.get(f"{live.base_url}/v1/events?after=0&limit=1000", timeout=30)
        _valid(doc, "EventPage", page.json())
        decisions = http.get(f"{live.base_url}/v1/decisions?after=0&limit=1000", timeout=30)
        _valid(doc, "DecisionPage", decisions.json())

"""Under the ``disconnect_audience:pause`` policy choice an ad group whose include list
empties is paused, and its owner can resume it: ``status`` in the ad group's PUT, with
paused -> enabled decided by the policy's ``resume_ad_group``."""

from __future__ import annotations

import pytest

from tests.support import Api, LiveServer, world_factory
from tests.support.policy import copy_policy, replace

pytestmark = pytest.mark.full  # a server of its own, on a policy copy
TOKEN = "pause-token"
RESUME_ALLOW = "p, self, resume_ad_group, True, allow, self_may_resume_ad_group,"


def _pause_policy(tmp_path, *, resume_allowed: bool = True):
    """A copy of the shipped policy (and its tests) that pauses emptied ad groups."""
    policy = copy_policy(tmp_path / "policy")
    for path in [policy / "policy.csv", *(policy / "tests").glob("*.yaml")]:
        path.write_text(path.read_text().replace("disconnect_audience:broaden", "disconnect_audience:pause"))
    if not resume_allowed:
        replace(policy / "policy.csv", RESUME_ALLOW, "p, self, resume_ad_group, True, deny, ad_group_not_owned,")
        replace(policy / "tests" / "ad_groups.yaml", "decision: allow, reason: self_may_resume_ad_group",
                "decision: deny, reason: ad_group_not_owned")
    return policy


@pytest.fixture
def paused(tmp_path):
    """(api, world) on a pause-policy server: the recipient's ad group lost its only
    included audience A (the owner stopped sharing it) and was paused."""
    def start(**kw):
        live = LiveServer(f"sqlite:///{tmp_path / 'authz.db'}", token=TOKEN,
                          policy_dir=str(_pause_policy(tmp_path, **kw))).start()
        servers.append(live)
        api = Api(live.base_url, TOKEN)
        w = world_factory(api)
        api.ok(api.put(f"/v1/ad-groups/{w.ag}", {"name": "g", "include": [w.A], "exclude": [w.B]},
                       account=w.recipient))
        stopped = api.ok(api.delete(f"/v1/audiences/{w.A}/shares/{w.recipient}", account=w.owner))
        assert "pause_ad_group" in [e["type"] for e in stopped["effects"]]
        assert api.ok(api.get(f"/v1/ad-groups/{w.ag}", account=w.recipient))["status"] == "paused"
        return api, w
    servers: list[LiveServer] = []
    yield start
    for live in servers:
        live.stop()


def test_the_owner_resumes_an_ad_group_the_pause_policy_paused(paused):
    api, w = paused()
    # a PUT without status changes the targeting and keeps the ad group paused
    kept = api.ok(api.put(f"/v1/ad-groups/{w.ag}", {"name": "g", "include": [w.C]}, account=w.recipient))
    assert kept["ad_group"]["status"] == "paused"
    # another account can neither resume it nor learn its targeting
    stranger = api.put(f"/v1/ad-groups/{w.ag}", {"name": "g", "status": "enabled"}, account=w.peer)
    assert stranger.status in (403, 404)
    assert api.ok(api.get(f"/v1/ad-groups/{w.ag}", account=w.recipient))["status"] == "paused"
    resumed = api.ok(api.put(f"/v1/ad-groups/{w.ag}", {"name": "g", "include": [w.C], "status": "enabled"},
                             account=w.recipient))
    assert resumed["ad_group"]["status"] == "enabled"
    assert api.ok(api.get(f"/v1/ad-groups/{w.ag}", account=w.recipient))["status"] == "enabled"
    # the owner may also pause it again itself, and a new ad group starts enabled
    assert api.ok(api.put(f"/v1/ad-groups/{w.ag}", {"name": "g", "status": "paused"},
                          account=w.recipient))["ad_group"]["status"] == "paused"
    assert api.ok(api.put(f"/v1/ad-groups/{w.ag}2", {"name": "new"}, account=w.recipient))["ad_group"]["status"] \
        == "enabled"
    assert api.put(f"/v1/ad-groups/{w.ag}", {"name": "g", "status": "running"}, account=w.recipient).status == 400


def test_resuming_is_the_policys_decision(paused):
    api, w = paused(resume_allowed=False)
    refused = api.put(f"/v1/ad-groups/{w.ag}", {"name": "g", "status": "enabled"}, account=w.recipient)
    assert refused.status == 403 and refused.codes == ["ad_group_not_owned"]
    assert api.ok(api.get(f"/v1/ad-groups/{w.ag}", account=w.recipient))["status"] == "paused"
    # what the policy still allows is unchanged: renaming keeps it paused
    assert api.ok(api.put(f"/v1/ad-groups/{w.ag}", {"name": "renamed"},
                          account=w.recipient))["ad_group"]["status"] == "paused"

"""No action commits and then answers an error: an answer over the response size limit is
cut to fit (its summary kept: effect counts and where its events are in the feed), pages
are cut short with a cursor that continues, and the access log shows the status sent."""

from __future__ import annotations

import pytest

from tests.support.api import one_share
from tests.support.ops import json_lines
from tests.support.reliability import DATABASES, private_server, server_log

pytestmark = pytest.mark.full  # server processes: the full tier

LIMIT = 16384
GROUPS = 150


def _long_id(prefix: str, i: int) -> str:
    return f"{prefix}{i:04d}".ljust(128, "x")  # the longest id the API takes


def _feed(api, after: int, last: int) -> list[dict]:
    """Every event from ``after`` to ``last``, paging through the feed."""
    events = []
    while after < last:
        r = api.get(f"/v1/events?after={after}&limit=1000")
        assert r.status == 200 and int(r.headers["Content-Length"]) <= LIMIT, r.body
        page = r.body["events"]
        assert page, "the feed stopped before the action's last event"
        events += [e for e in page if e["id"] <= last]
        after = r.body["next_after"]
    return events


def _access_lines(live, path: str) -> list[dict]:
    return [r for r in json_lines(server_log(live)) if r.get("logger") == "audience_authz.access"
            and r.get("path") == path]


@pytest.mark.parametrize("kind", DATABASES)
def test_stop_sharing_with_many_long_id_ad_groups_commits_and_answers_within_the_limit(kind, tmp_path):
    env = {"AUDIENCE_AUTHZ_MAX_RESPONSE": str(LIMIT)}
    with private_server(kind, tmp_path, env=env) as (url, live, api):
        one_share(api)
        groups = [_long_id("g", i) for i in range(GROUPS)]
        for group in groups:  # the recipient controls the size of the answer
            api.ok(api.put(f"/v1/ad-groups/{group}", {"name": "g", "include": ["A"]}, account="recipient"))

        preview = api.authorize("owner", "stop_sharing", "A", target_account_id="recipient")
        assert preview.status == 200, preview.body  # the preview answers, cut to the limit
        assert int(preview.headers["Content-Length"]) <= LIMIT
        assert preview.body["decision"] == "allow" and preview.body["truncated"] == ["effects"]
        assert preview.body["effect_counts"] == {"end_share": 1, "disconnect_audience": GROUPS,
                                                 "remove_from_list": 1}

        stopped = api.delete("/v1/audiences/A/shares/recipient", account="owner")
        assert stopped.status == 200, stopped.body
        assert int(stopped.headers["Content-Length"]) <= LIMIT
        body = stopped.body
        assert body["stopped"] == ["recipient"] and body["effects"] == [] and "effects" in body["truncated"]
        assert body["effect_counts"] == preview.body["effect_counts"]
        span = body["events"]
        assert span["count"] == GROUPS + 2 and span["last_id"] - span["first_id"] + 1 == span["count"]

        # the change is in the events feed, which pages within the limit too
        events = _feed(api, span["first_id"] - 1, span["last_id"])
        assert {e["id"] for e in events} == set(range(span["first_id"], span["last_id"] + 1))
        disconnected = sorted(e["payload"]["ad_group_id"] for e in events if e["type"] == "disconnect_audience")
        assert disconnected == sorted(groups)
        assert [e["account_id"] for e in events if e["type"] == "end_share"] == ["recipient"]
        # ... and committed: asked again, the share is gone (not a 500 then a 403)
        again = api.delete("/v1/audiences/A/shares/recipient", account="owner")
        assert again.status == 403 and again.codes == ["not_shared"]

        # a read that cannot be cut answers an error, and the access log shows that status
        wide = _long_id("wide", 0)
        audiences = [_long_id(f"a{i}_", i) for i in range(200)]
        for audience in audiences:
            api.ok(api.post("/v1/audiences", {"id": audience, "name": "a", "source": "customer_file"},
                            account="owner"), 201)
        upserted = api.put(f"/v1/ad-groups/{wide}", {"name": "w", "include": audiences[:100],
                                                     "exclude": audiences[100:]}, account="owner")
        assert upserted.status == 200 and int(upserted.headers["Content-Length"]) <= LIMIT
        assert {"ad_group.include", "ad_group.exclude"} & set(upserted.body["truncated"])
        too_large = api.get(f"/v1/ad-groups/{wide}", account="owner")
        assert too_large.status == 500 and too_large.body["error"]["code"] == "response_too_large"
        assert [line["status"] for line in _access_lines(live, f"/v1/ad-groups/{wide}")] == [200, 500]
        assert [line["status"] for line in _access_lines(live, "/v1/audiences/A/shares/recipient")] == [200, 403]

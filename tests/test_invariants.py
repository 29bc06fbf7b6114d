"""The invariant checker itself: silent on a state the API built, and it names each kind of
damage done to the database behind the service's back (so the tests that rely on it can
fail)."""

from __future__ import annotations

import pytest

from tests.support import world_factory
from tests.support.invariants import check_invariants
from tests.support.reliability import DATABASES, execute, private_server

pytestmark = pytest.mark.full  # server processes: the full tier


@pytest.mark.parametrize("kind", DATABASES)
def test_checker_finds_each_kind_of_damage(kind, tmp_path):
    with private_server(kind, tmp_path) as (url, _live, api):
        w = world_factory(api)
        api.ok(api.put(f"/v1/ad-groups/{w.ag_r}", {"name": "r", "include": [w.A], "exclude": [w.B]},
                       account=w.recipient))
        api.ok(api.put(f"/v1/ad-groups/{w.ag_p}", {"name": "p"}, account=w.peer))
        api.ok(api.delete(f"/v1/audiences/{w.A}/shares/{w.recipient}", account=w.owner))
        assert check_invariants(url, api) == []

        def damage(sql, params, expected):
            execute(url, sql, params)
            found = check_invariants(url, api)
            assert any(expected in v for v in found), (expected, found)

        # an ad group targeting an audience its account has no relation to
        damage("INSERT INTO ad_group_audience (ad_group_id, audience_id, mode, position) VALUES (?, ?, ?, 0)",
               [w.ag_p, w.C, "include"], f"ad group {w.ag_p} of {w.peer} includes {w.C}, which it may not apply (no_access)")
        # a share stopped without its event (and without disconnecting the ad group)
        damage("UPDATE audience_share SET status = 'stopped' WHERE audience_id = ? AND recipient_account_id = ?",
               [w.B, w.recipient], "1 stopped rows but 0 end_share events")
        assert any(f"excludes {w.B}, which it may not apply (no_access)" in v for v in check_invariants(url))
        # an account moved out of the owner's Business Center keeps an active share
        damage("UPDATE account SET business_center_id = ? WHERE id = ?", [w.bc2, w.recipient],
               f"active share of {w.C} to {w.recipient} breaks the sharing rules (not_same_business_center)")
        # a deleted audience that is still shared, without its audience_deleted event
        damage("UPDATE audience SET status = 'deleted' WHERE id = ?", [w.C], f"deleted audience {w.C} is still shared")
        assert any(f"audience {w.C} is deleted with 0 audience_deleted events" in v for v in check_invariants(url))
        # an event naming a decision the log does not hold
        damage("UPDATE event SET decision_id = 'nope' WHERE type = 'audience_created' AND audience_id = ?",
               [w.A], "names decision nope, which the decision log lacks")
        # an event lost from the feed
        damage("DELETE FROM event WHERE type = 'share_created' AND audience_id = ?", [w.A],
               "1 share rows but 0 share_created events")
        # targeting changed without its event
        damage("DELETE FROM ad_group_audience WHERE ad_group_id = ?", [w.ag_r],
               f"ad group {w.ag_r} targets {{'include': [], 'exclude': []}} but its events say")
        # an edit without its event
        damage("UPDATE audience SET revision = revision + 1 WHERE id = ?", [w.A], "at revision 2 after 0 update events")


@pytest.mark.parametrize("kind", DATABASES)
def test_feed_reader_that_missed_or_repeated_events_is_reported(kind, tmp_path):
    with private_server(kind, tmp_path) as (url, _live, api):
        world_factory(api)
        ids = [e["id"] for e in api.ok(api.get("/v1/events?limit=1000"))["events"]]
        assert check_invariants(url, api, consumed=ids) == []
        assert any("missed 1 stored events" in v
                   for v in check_invariants(url, consumed=ids[:3] + ids[4:]))
        assert any("more than once" in v for v in check_invariants(url, consumed=ids[:3] + ids[2:]))

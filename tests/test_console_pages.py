"""The console's paged reads on both databases, through a live server and a plain HTTP
session (the browser tests in test_console.py run on SQLite only): the decision log's
filters and keyset pages, the events feed, the pickers, and the session's refusals."""

from __future__ import annotations

import re
import time

import pytest
import requests

from tests.conftest import TOKEN
from tests.support import world_factory

pytestmark = pytest.mark.full
ROW = re.compile(r'<tr class="row">.*?class="open">(\d+)</a>.*?class="mono principal">([^<]*)<', re.S)


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


@pytest.fixture
def world(live_api):
    """The scenario on the live server the console pages are read from."""
    return world_factory(live_api)


@pytest.fixture
def console(live_server) -> requests.Session:
    session = requests.Session()
    login = session.get(live_server.base_url + "/console/login")
    answer = session.post(live_server.base_url + "/console/login",
                          data={"token": TOKEN, "csrf_token": _csrf(login.text)})
    assert answer.status_code == 200 and answer.url.endswith("/console/rules")
    session.base = live_server.base_url
    return session


def _rows(session, **params) -> tuple[list[tuple[int, str]], str]:
    page = session.get(session.base + "/console/decisions", params=params)
    assert page.status_code == 200, page.text[:500]
    return [(int(i), p) for i, p in ROW.findall(page.text)], page.text


def _decide(api, checks: list[tuple[str, str, str]]) -> None:
    body = {"checks": [{"principal": {"account_id": a}, "action": act, "resource": {"audience_id": aud}}
                       for a, act, aud in checks]}
    api.ok(api.post("/v1/authorize/batch", body))
    time.sleep(0.3)  # past the batched log's flush interval


def test_decision_log_pages_and_filters(console, live_api, world):
    api = live_api
    _decide(api, [(world.peer, "view", world.A)] * 60 + [(world.peer, "view", world.B), (world.owner, "view", world.B)])
    rows, _ = _rows(console, account=world.peer)
    assert len(rows) == 50 and {p for _, p in rows} == {world.peer}
    ids = [i for i, _ in rows]
    assert ids == sorted(ids, reverse=True)
    older, html = _rows(console, account=world.peer, before=ids[-1])
    assert len(older) == 11 and max(i for i, _ in older) < ids[-1]
    assert 'id="older"' not in html  # the last page

    by_audience, _ = _rows(console, audience=world.B, action="view")
    assert {p for _, p in by_audience} == {world.peer, world.owner} and len(by_audience) == 2
    denied, _ = _rows(console, account=world.peer, reason="no_access", audience=world.B)
    assert len(denied) == 1
    allowed, _ = _rows(console, audience=world.B, reason="owner_may_view")
    assert [p for _, p in allowed] == [world.owner]
    assert _rows(console, account=world.peer, decision="allow")[0] == []
    assert len(_rows(console, account=world.owner, since="2000-01-01T00:00:00Z", action="view")[0]) == 1
    assert _rows(console, account=world.owner, until="2000-01-01T00:00:00Z")[0] == []
    bad = console.get(console.base + "/console/decisions", params={"since": "yesterday"})
    assert bad.status_code == 400 and "not an ISO 8601 time" in bad.text

    detail = console.get(console.base + f"/console/decisions/{ids[0]}")
    assert detail.status_code == 200 and "no_access" in detail.text and "principal_known" in detail.text


def test_events_and_pickers(console, live_api, world):
    api = live_api
    api.ok(api.put(f"/v1/ad-groups/g_{world.u}", {"name": "g", "include": [world.A]}, account=world.recipient))
    api.ok(api.delete(f"/v1/audiences/{world.A}/shares/{world.recipient}", account=world.owner))
    events = console.get(console.base + "/console/events", params={"audience": world.A})
    assert events.status_code == 200
    assert f"ad group g_{world.u} of account {world.recipient} lost audience {world.A}" in events.text
    assert "stop_sharing by " + world.owner in events.text

    def options(**params):
        page = console.get(console.base + "/console/pick", params=params)
        assert page.status_code == 200
        return re.findall(r'<option value="([^"]+)"', page.text)

    assert options(field="account", account=world.recipient) == [world.recipient]
    assert set(options(field="audience", account=world.recipient, audience="")) == {world.B, world.C}
    assert options(field="audience", account=world.owner, audience=world.A) == [world.A]
    assert options(field="ad_group", account=world.recipient, ad_group="") == [f"g_{world.u}"]
    assert options(field="ad_group", account=world.owner, ad_group="") == []


def test_the_session_is_the_only_way_in(live_server, console):
    server = live_server
    bare = requests.get(server.base_url + "/console/decisions", allow_redirects=False)
    assert bare.status_code == 302 and bare.headers["Location"].startswith("/console/login")
    token_only = requests.get(server.base_url + "/console/decisions", allow_redirects=False,
                              headers={"Authorization": f"Bearer {TOKEN}"})
    assert token_only.status_code == 302  # the console takes its session, not the API's header
    assert requests.get(server.base_url + "/v1/events").status_code == 401  # the API still needs its token
    no_csrf = console.post(console.base + "/console/try", data={"account": "a", "action": "view", "audience": "b"})
    assert no_csrf.status_code == 400
    out = console.post(console.base + "/console/logout",
                       data={"csrf_token": _csrf(console.get(console.base + "/console/try").text)})
    assert out.url.endswith("/console/login")
    assert console.get(console.base + "/console/rules", allow_redirects=False).status_code == 302


def test_out_of_range_numbers_and_control_characters_are_a_400_page(console, live_api, world):
    """Every integer parameter range-checked, every text parameter free of NUL and other control
    characters: the console's 400 error page, nothing looked up (SQLite overflows past 64 bits,
    PostgreSQL refuses NUL in text)."""
    huge = "99999999999999999999"
    asked = [("/console/decisions", {"before": huge}), ("/console/events", {"before": huge}),
             ("/console/decisions", {"before": "-1"}), ("/console/rules", {"line": huge}),
             (f"/console/decisions/{huge}", {}), ("/console/decisions/id/%00", {}),
             ("/console/decisions/id/a%01b", {})]
    for name in ("account", "audience", "reason", "action", "decision", "since"):
        asked.append(("/console/decisions", {name: "a\x00b"}))
    for field in ("account", "audience", "ad_group", "target"):
        asked.append(("/console/pick", {"account": world.owner, "field": field, field: "a\x00"}))
        asked.append(("/console/pick", {"field": field, field: "a", "account": "\x00"}))
    asked += [("/console/events", {"audience": "\x00"}), ("/console/events", {"audience": "a\x1fb"}),
              ("/console/decisions", {"account\x00": "a"})]
    for path, params in asked:
        answer = console.get(console.base + path, params=params)
        assert answer.status_code == 400, (path, params, answer.status_code, answer.text[:300])
        assert "control character" in answer.text or "between 0 and" in answer.text or "past" in answer.text, \
            (path, params, answer.text[:300])
        assert "<html" in answer.text.lower()  # the console's error page, not the API's JSON
    form = console.get(console.base + "/console/try")
    tried = console.post(console.base + "/console/try", data={"csrf_token": _csrf(form.text), "account": "a\x00",
                                                              "action": "view", "audience": world.A})
    assert tried.status_code == 400 and "control character" in tried.text, tried.text[:300]
    # at the bounds: an answer, not a refusal
    for path, params in (("/console/decisions", {"before": str(2**63 - 1)}), ("/console/events", {"before": "0"}),
                         ("/console/pick", {"field": "account", "account": "a\tb"[:1]})):
        assert console.get(console.base + path, params=params).status_code == 200, (path, params)
    assert console.get(console.base + f"/console/decisions/{2**63 - 1}").status_code == 404

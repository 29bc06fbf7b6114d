"""Generated input on the console's pages: the console has no OpenAPI document for
schemathesis to read, so hypothesis draws the requests itself: every console page a
logged-in session reads (each GET route of the app's URL map under /console, and the Try
form's POST), with its known parameters and unknown ones, as texts of any characters
(NUL and other control characters included), integers far past 64 bits, negatives and
junk. Against a live server on each database; the server's access log must show no 5xx
and its log no traceback.

Size: AUDIENCE_AUTHZ_STRESS_CONSOLE_FUZZ_EXAMPLES (hypothesis examples).
"""

from __future__ import annotations

import re

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audience_authz import config
from audience_authz.http.app import create_app
from tests.support import world_factory
from tests.support.ops import json_lines
from tests.support.reliability import DATABASES, TOKEN, private_server, server_log, size
from tests.support.stress_results import record

pytestmark = pytest.mark.full  # server processes: the full tier

# pages that change the server's state or end the session: not fuzzed here
SKIPPED = {"/console/login", "/console/logout", "/console/reload", "/console/shadow", "/console/shadow/stop",
           "/console/static/<path:filename>"}
# every parameter a page reads (pages.py), and one it does not
PARAMS = ["account", "audience", "action", "decision", "reason", "since", "until", "before", "field", "target",
          "ad_group", "line", "last", "directory", "unknown"]

texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)  # a URL cannot carry a lone surrogate
numbers = st.one_of(st.integers(), st.integers(2**63 - 5, 2**63 + 5), st.integers(-(2**63) - 5, -(2**63) + 5),
                    st.integers(10**19, 10**30)).map(str)
values = st.one_of(texts, numbers, st.sampled_from(["", "allow", "deny", "account", "audience", "ad_group",
                                                    "2026-01-01T00:00:00Z", "view", "share"]))


def _console_get_routes(tmp_path) -> list[str]:
    """The console's GET routes, from the app's URL map: a new page is fuzzed without being listed."""
    app = create_app(config.load(database=f"sqlite:///{tmp_path / 'map.db'}", tokens=TOKEN), policy_poll=0)
    return sorted({r.rule for r in app.url_map.iter_rules()
                   if r.rule.startswith("/console") and "GET" in r.methods and r.rule not in SKIPPED})


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def _path(rule: str, data) -> str:
    """``rule`` with each converter replaced by a drawn value (quoted by requests)."""
    def fill(match):
        kind = match.group(1) or ""
        if kind.startswith("int"):
            return data.draw(numbers.filter(lambda n: not n.startswith("-")), label="int")
        return requests.utils.quote(data.draw(texts.filter(bool), label=kind or "str"), safe="")
    return re.sub(r"<(?:(\w+):)?\w+>", fill, rule)


@pytest.mark.parametrize("kind", DATABASES)
def test_console_pages_answer_generated_input_without_a_server_error(kind, tmp_path):
    examples = size("console_fuzz_examples", 300)
    routes = _console_get_routes(tmp_path)
    assert {"/console/decisions", "/console/events", "/console/pick", "/console/decisions/<int:key>",
            "/console/decisions/id/<decision_id>"} <= set(routes)
    with private_server(kind, tmp_path) as (_url, live, api):
        world_factory(api)  # rows for the pages to find
        session = requests.Session()
        login = session.get(live.base_url + "/console/login")
        answer = session.post(live.base_url + "/console/login", data={"token": TOKEN, "csrf_token": _csrf(login.text)})
        assert answer.status_code == 200 and answer.url.endswith("/console/rules")
        csrf = _csrf(session.get(live.base_url + "/console/try").text)
        asked: list[tuple[str, str, int]] = []

        @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(data=st.data())
        def ask(data):
            params = data.draw(st.dictionaries(st.sampled_from(PARAMS), values, max_size=5), label="params")
            if data.draw(st.integers(0, 9), label="form") == 0:  # the Try form's POST
                form = {"csrf_token": csrf, **data.draw(st.dictionaries(
                    st.sampled_from(["account", "action", "audience", "target", "ad_group"]), values), label="form")}
                path, reply = "/console/try", session.post(live.base_url + "/console/try", data=form, timeout=30)
            else:
                path = _path(data.draw(st.sampled_from(routes), label="route"), data)
                reply = session.get(live.base_url + path, params=params, timeout=30, allow_redirects=False)
            asked.append((path, str(params)[:200], reply.status_code))
            assert reply.status_code < 500, (path, params, reply.status_code, reply.text[:500])
            assert reply.status_code != 302 or "/console/login" not in reply.headers.get("Location", ""), \
                "the session was lost: the pages after this were not fuzzed"

        ask()
        log = server_log(live)
        answers = [r for r in json_lines(log) if r.get("logger") == "audience_authz.access"
                   and r.get("path", "").startswith("/console")]
        errors = [r for r in answers if r["status"] >= 500]
        refused = sum(400 <= status < 500 for _, _, status in asked)
        print(f"\nCONSOLE FUZZ {kind}: {len(asked)} requests over {len(routes)} GET routes and the Try form,"
              f" {refused} refused (4xx), {len(errors)} server errors")
        record("console fuzz", kind, requests=len(answers), errors=len(errors), fuzz_cases=len(asked))
        assert len(asked) >= examples // 2 and len(answers) >= len(asked)
        assert errors == [], errors[:5]
        assert "Traceback" not in log
        assert refused > 0  # the generated input reached the refusals, not only the happy paths

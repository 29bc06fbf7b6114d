"""The policy console (/console) in a real browser: Playwright driving Debian's chromium
(`make install` installs it; no browser is ever downloaded) against a live server.

Each test saves a screenshot under test-artifacts/ (git-ignored); docs/console.md shows a
few of them.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from audience_authz.engine.policy import Policy
from audience_authz.policytools import matrix as policymatrix
from audience_authz.vocabulary import AUDIENCE_RELATIONS, MATRIX_ACTIONS
from tests.support import FIXTURE_POLICY, ROOT, Api, LiveServer, world_factory

pytestmark = pytest.mark.full
playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

FULL, CHECK = "console-full-token", "console-check-token"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
# every page and fragment of the console, and a path it does not have
CONSOLE_URLS = ["/console", "/console/", "/console/rules", "/console/matrix", "/console/try", "/console/decisions",
                "/console/decisions/1", "/console/candidate", "/console/events", "/console/pick?field=account",
                "/console/no-such-page"]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('console-db') / 'authz.db'}"
    with LiveServer(url, token=FULL, env={"AUDIENCE_AUTHZ_CHECK_TOKENS": CHECK}) as server:
        yield server


@pytest.fixture(scope="module")
def api(live) -> Api:
    return Api(live.base_url, FULL)


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is missing: `make install` installs it (apt-get install chromium)")
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, live, request):
    context = browser.new_context(base_url=live.base_url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    ARTIFACTS.mkdir(exist_ok=True)
    yield page
    page.screenshot(path=str(ARTIFACTS / f"console-{request.node.name}.png"), full_page=True)
    context.close()


def log_in(page, token: str = FULL) -> None:
    page.goto("/console/login")
    page.fill("#token", token)
    page.click("#login")
    expect(page.locator("#scope")).to_be_visible()


def policy_line(policy: Policy, rel: str, act: str, reason: str) -> int:
    return next(r.line for r in policy.rules if (r.rel, r.act, r.reason) == (rel, act, reason))


def test_log_in_and_out(page, live):
    page.goto("/console/login")
    page.fill("#token", "not-a-token")
    page.click("#login")
    expect(page.locator("#login-error")).to_contain_text("not known")

    log_in(page)
    assert page.url.endswith("/console/rules")
    expect(page.locator("#scope")).to_have_text("full")
    cookie = next(c for c in page.context.cookies() if c["name"] == "audience_authz_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/console"
    assert FULL not in cookie["value"]

    page.click("#logout")
    expect(page.locator("#token")).to_be_visible()
    page.goto("/console/rules")
    assert "/console/login" in page.url


def test_rules_and_matrix_show_the_shipped_policy(page):
    policy = Policy.load(FIXTURE_POLICY)
    log_in(page)
    page.goto("/console/rules")
    expect(page.locator("#policy-version")).to_have_text(policy.version)
    for rule in policy.rules:  # every line, in file order, with its reason and effects
        row = page.locator(f"#line-{rule.line}")
        expect(row).to_contain_text(rule.reason)
        for name, arg in rule.effects:
            expect(row).to_contain_text(f"{name}:{arg}" if arg else name)
    rows = page.locator("table.rules tr[data-line]")
    assert [int(n) for n in rows.evaluate_all("rs => rs.map(r => r.dataset.line)")] == [r.line for r in policy.rules]
    reshare = page.locator(f"#line-{policy_line(policy, 'recipient', 'share', 'reshare_forbidden')}")
    expect(reshare).to_contain_text(policy.message("reshare_forbidden"))
    expect(reshare.locator("details summary")).to_contain_text("case")  # the shipped tests reach it
    expect(page.locator("h2", has_text="the recipient's column")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "console-rules.png"))  # docs/console.md shows these

    page.goto("/console/matrix")
    access = page.locator("table.matrix").first
    expected = policymatrix.tables(policy)[0]
    for row_index, _act in enumerate(MATRIX_ACTIONS, start=2):
        for col, _rel in enumerate(AUDIENCE_RELATIONS, start=2):
            cell = access.locator(f"tr:nth-child({row_index}) td:nth-child({col})")
            decision = expected.rows[row_index - 2][col - 1]
            expect(cell).to_contain_text(decision.decision)
            expect(cell.locator("a")).to_have_attribute("href", re.compile(f"#line-{decision.rule.line}$"))
    # the source's table: a recipient may apply but not re-share
    share_row = access.locator("tr").filter(has=page.locator("td:first-child", has_text=re.compile(r"^share$")))
    expect(share_row.locator("td").nth(2)).to_contain_text("reshare_forbidden")
    page.locator("table.matrix td.deny a").first.click()
    expect(page.locator("tr.decides")).to_have_count(1)


def test_try_a_decision_shows_the_deciding_line_and_facts(page, api):
    w = world_factory(api)
    policy = Policy.load(FIXTURE_POLICY)
    log_in(page)
    page.goto("/console/try")
    page.fill("#account", w.recipient)  # the picker offers the store's accounts
    expect(page.locator(f"#pick-account option[value='{w.recipient}']")).to_have_count(1)
    page.select_option("#action", "share")
    page.fill("#audience", w.A)
    expect(page.locator(f"#pick-audience option[value='{w.A}']")).to_have_count(1)
    page.fill("#target", w.peer)
    page.click("#decide")
    expect(page.locator("#decision")).to_have_text("deny")
    expect(page.locator("#reasons")).to_contain_text("reshare_forbidden")
    line = policy_line(policy, "recipient", "share", "reshare_forbidden")
    expect(page.locator("#decided-line")).to_have_text(str(line))
    highlighted = page.locator("tr.decides")
    expect(highlighted).to_have_count(1)
    expect(highlighted).to_have_attribute("id", f"line-{line}")
    facts = page.locator("#facts")
    expect(facts.locator("tr", has_text="audience_known")).to_contain_text("true")
    expect(page.locator("#relation")).to_have_text("recipient")
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / "console-try.png"))

    page.fill("#account", w.owner)  # the owner may share it: an allow with its line
    page.click("#decide")
    expect(page.locator("#decision")).to_have_text("allow")
    expect(page.locator("tr.decides")).to_have_id(f"line-{policy_line(policy, 'owner', 'share', 'owner_may_share')}")

    page.select_option("#action", "delete")  # the effects it would carry, planned from the store
    page.fill("#target", "")
    page.click("#decide")
    expect(page.locator("#decision")).to_have_text("allow")
    expect(page.locator("#effects")).to_contain_text("end_share")
    expect(page.locator("#effects li", has_text="end_share")).to_contain_text(w.recipient)
    assert api.get(f"/v1/audiences/{w.A}", account=w.owner).body["status"] == "active"  # planned, not applied


def test_decision_log_filtered_to_one_account(page, api):
    w = world_factory(api)
    for name in ("A", "B", "C"):
        api.ok(api.authorize(w.peer, "view", w.id(name)))  # peer has no relation: no_access
    log_in(page)
    page.goto("/console/decisions")
    page.fill("#f-account", w.peer)
    page.click("#filter")
    rows = page.locator("#decisions tr.row")
    expect(rows).to_have_count(3)  # the batched log rows are written within a few milliseconds
    assert set(rows.locator("td.principal").all_inner_texts()) == {w.peer}
    ids = [int(t) for t in rows.locator("a.open").all_inner_texts()]
    assert ids == sorted(ids, reverse=True)  # newest first
    page.select_option("#f-decision", "allow")
    page.click("#filter")
    expect(rows).to_have_count(0)
    page.select_option("#f-decision", "deny")
    page.fill("#f-audience", w.B)
    page.click("#filter")
    expect(rows).to_have_count(1)
    rows.first.locator("a.open").click()
    expect(page.locator("#principal")).to_have_text(w.peer)
    expect(page.locator("#decision")).to_have_text("deny")
    expect(page.locator("#facts tr", has_text="principal_known")).to_contain_text("true")
    line = policy_line(Policy.load(FIXTURE_POLICY), "none", "*", "no_access")
    expect(page.locator("#deciding-line tr.decides")).to_contain_text("no_access")
    expect(page.locator("#deciding-line tr.decides td").first).to_have_text(str(line))
    page.screenshot(path=str(ARTIFACTS / "console-decision.png"), full_page=True)
    page.click("#try-again")  # the same request, asked of the policy serving now
    expect(page.locator("#account")).to_have_value(w.peer)
    page.click("#decide")
    expect(page.locator("#reasons")).to_contain_text("no_access")


def _reshare_denials(api: Api) -> int:
    """Recipient re-share denials in the whole log (what a candidate allowing them flips)."""
    after, count = 0, 0
    while True:
        page = api.ok(api.get(f"/v1/decisions?after={after}&limit=1000"))
        if not page["decisions"]:
            return count
        count += sum(d["action"] == "share" and d["relation"] == "recipient" and d["decision"] == "deny"
                     for d in page["decisions"])
        after = page["next_after"]


def test_candidate_that_lets_recipients_reshare_counts_the_changed_decisions(page, api, tmp_path):
    w = world_factory(api)
    for target in (w.peer, w.other, w.nobc):
        assert api.authorize(w.recipient, "share", w.A, target_account_id=target).codes == ["reshare_forbidden"]
    candidate = tmp_path / "candidate"
    shutil.copytree(Policy.load(FIXTURE_POLICY).directory, candidate)
    csv = candidate / "policy.csv"
    csv.write_text(csv.read_text().replace("p, recipient, share, True, deny, reshare_forbidden,",
                                           "p, recipient, share, True, allow, recipient_may_reshare,"))
    time.sleep(0.3)  # past the log's flush interval in every worker
    expected = _reshare_denials(api)
    assert expected >= 3

    log_in(page)
    page.goto("/console/candidate")
    page.fill("#directory", str(candidate))
    page.click("#analyse")
    expect(page.locator("#check-ok")).to_contain_text("passes")
    change = page.locator("#changes tr", has_text="deny->allow").filter(has_text="reshare_forbidden")
    expect(change.locator("td.count")).to_have_text(str(expected))
    expect(page.locator("#replay-summary [data-kind='deny->allow']")).to_contain_text(str(expected))
    expect(page.locator("#candidate-tests")).to_contain_text("fail")  # the shipped case expects the deny
    # the symbolic diff: exactly one changed region, the recipient's share, with the replayed denials in it
    regions = page.locator("#regions-table tr.region")
    expect(regions).to_have_count(1)
    region = regions.first
    expect(region).to_have_attribute("data-relation", "recipient")
    expect(region).to_have_attribute("data-action", "share")
    expect(region.locator("td.kind")).to_have_text("deny->allow")
    expect(region.locator("td.condition")).not_to_be_empty()
    expect(region.locator("td.replayed")).to_contain_text(str(expected))
    assert expected > 0
    # the proofs: the property forbidding re-sharing fails, with the counterexample the candidate allows
    prop = page.locator("#properties tr[data-property='recipient_cannot_manage']")
    expect(prop.locator("td.status")).to_have_text("failed")
    expect(prop.locator(".counterexample")).to_contain_text("relation recipient, action share")
    expect(prop.locator(".counterexample")).to_contain_text("allow recipient_may_reshare")
    expect(page.locator("#properties tr[data-property='no_relation_no_access'] td.status")).to_have_text("proven")
    page.locator("#safety").screenshot(path=str(ARTIFACTS / "console-safety.png"))  # docs/console.md shows it
    page.locator("#analysis summary", has_text="candidate's rules").click()  # its changed line: no passing case
    reshare = policy_line(Policy.load(FIXTURE_POLICY), "recipient", "share", "reshare_forbidden")
    expect(page.locator(f"#line-{reshare} .untested")).to_be_visible()
    expect(page.locator("#analysis .untested")).to_have_count(1)
    page.screenshot(path=str(ARTIFACTS / "console-candidate.png"), full_page=True)

    page.fill("#directory", "")  # the same candidate as an uploaded policy.csv
    page.set_input_files("#files", str(csv))
    page.click("#analyse")
    expect(page.locator("#check-ok")).to_contain_text("uploaded: policy.csv")
    expect(change.locator("td.count")).to_have_text(str(expected))

    page.click("#reload")  # a full session may reload: the files on disk have not changed
    expect(page.locator("#reload-result")).to_contain_text("unchanged")

    # a full session may shadow the candidate (what GET /v1/policy/shadow then reports), and stop it
    expect(page.locator("#shadow-state")).to_have_text("none")
    page.fill("#shadow-directory", str(candidate))
    page.click("#set-shadow")
    expect(page.locator("#shadow-state")).to_have_text("active")
    shadow_version = Policy.load(candidate).version
    expect(page.locator("#shadow-version")).to_have_text(shadow_version)
    assert api.ok(api.get("/v1/policy/shadow"))["shadow_version"] == shadow_version
    try:
        summary, deadline = {}, time.monotonic() + 10  # every worker takes the shadow up at its next poll
        while not summary.get("disagreements") and time.monotonic() < deadline:
            api.authorize(w.recipient, "share", w.A, target_account_id=w.peer)  # denied; the shadow allows it
            summary = api.ok(api.get("/v1/policy/shadow"))
        assert summary["disagreements"] > 0
        page.goto("/console/candidate")
        row = page.locator("#shadow-by tr", has_text="allow recipient_may_reshare")
        expect(row).to_contain_text("deny reshare_forbidden")
        assert int(row.locator("td.count").inner_text()) >= summary["disagreements"]
    finally:
        page.click("#stop-shadow")
    expect(page.locator("#shadow-state")).to_have_text("none")
    assert api.ok(api.get("/v1/policy/shadow"))["active"] is False
    page.set_input_files("#shadow-files", str(csv))  # the same candidate as an uploaded policy.csv
    page.click("#set-shadow")
    expect(page.locator("#shadow-version")).to_have_text(shadow_version)
    page.click("#stop-shadow")
    expect(page.locator("#shadow-state")).to_have_text("none")

    proofless = tmp_path / "proofless"  # a candidate without properties.yaml says so
    shutil.copytree(candidate, proofless)
    (proofless / "properties.yaml").unlink()
    page.fill("#directory", str(proofless))
    page.click("#analyse")
    expect(page.locator("#no-properties")).to_be_visible()


def test_check_scoped_session_cannot_reload(page, live):
    log_in(page, CHECK)
    expect(page.locator("#scope")).to_have_text("check")
    page.goto("/console/candidate")
    expect(page.locator("#reload")).to_be_disabled()
    expect(page.locator("#read-only")).to_be_visible()
    token = page.locator("#reload-form input[name=csrf_token]").get_attribute("value")
    answer = page.request.post("/console/reload", form={"csrf_token": token})
    assert answer.status == 403
    assert "may not" in answer.text()
    probe = page.request.post("/console/candidate", form={"csrf_token": token, "directory": "/etc"})
    assert probe.status == 403  # nor analyse a candidate (as POST /v1/policy/diff: full only)
    expect(page.locator("#analyse")).to_be_disabled()
    expect(page.locator("#set-shadow")).to_have_count(0)  # nor set or stop a shadow
    expect(page.locator("#shadow-read-only")).to_be_visible()
    for path, form in (("/console/shadow", {"directory": str(FIXTURE_POLICY)}), ("/console/shadow/stop", {})):
        refused = page.request.post(path, form={"csrf_token": token, **form})
        assert refused.status == 403 and "may not" in refused.text(), path
    assert Api(live.base_url, FULL).ok(Api(live.base_url, FULL).get("/v1/policy/shadow"))["active"] is False
    forged = page.request.post("/console/reload", form={"csrf_token": "forged"})
    assert forged.status == 400  # and no form goes through without its CSRF token


def test_unauthenticated_visits_land_on_the_login_page(page, live):
    for url in CONSOLE_URLS:
        page.goto(url)
        assert urlsplit_path(page.url) == "/console/login", url
        expect(page.locator("#token")).to_be_visible()
    refused = page.request.post("/console/reload", max_redirects=0)
    assert refused.status == 302 and refused.headers["location"].startswith("/console/login")
    fragment = page.request.get("/console/pick?field=account", headers={"HX-Request": "true"}, max_redirects=0)
    assert fragment.status == 401 and fragment.headers["hx-redirect"].startswith("/console/login")
    assert fragment.text() == ""
    page.goto("/console/decisions?account=x")  # after logging in, back where the visit was going
    log_in_here(page)
    assert page.url.endswith("/console/decisions?account=x")


def log_in_here(page) -> None:
    page.fill("#token", FULL)
    page.click("#login")
    expect(page.locator("#scope")).to_be_visible()


def urlsplit_path(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).path


def test_the_api_path_does_not_load_the_console():
    code = ("import sys; import audience_authz.http.routes, audience_authz.http.policy_routes, "
            "audience_authz.http.auth, audience_authz.http.errors; "
            "print(sorted(m for m in sys.modules if 'console' in m or m.startswith(('flask_wtf', 'wtforms'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"

"""An action the policy allows but the service cannot carry out is a 409 or 422 with its own
code, never a 500: checked with permissive copies of policy/ through HTTP (Flask test
client). And the worked example of docs/policy-authoring.md, as written there, is right."""

from __future__ import annotations

import re
import shutil

import pytest

from audience_authz import config
from audience_authz.contract import POLICY_GIVEN_REASONS  # the contract keeps these lines deny
from audience_authz.http.app import create_app
from tests.support import FIXTURE_POLICY, ROOT
from tests.support.policy import RECIPIENT_REFRESH_ALLOW, RECIPIENT_REFRESH_DENY, cli, copy_policy, replace

TOKEN = "carry-out-token"


class Http:
    def __init__(self, tmp_path, policy):
        settings = config.load(database=f"sqlite:///{tmp_path / 'authz.db'}", policy_dir=str(policy), tokens=TOKEN)
        self.client = create_app(settings, policy_poll=0).test_client()

    def call(self, method, path, body=None, account=None):
        headers = {"Authorization": f"Bearer {TOKEN}"}
        if account:
            headers["X-Account-Id"] = account
        return self.client.open(path, method=method, json=body, headers=headers)

    def ok(self, method, path, body=None, account=None):
        answer = self.call(method, path, body, account)
        assert answer.status_code in (200, 201), (path, answer.get_json())
        return answer.get_json()


def _world(http: Http) -> None:
    """owner and recipient in one Business Center; custom audience C and its lookalike L,
    both shared with the recipient."""
    http.ok("PUT", "/v1/business-centers/bc1", {"name": "BC"})
    for account in ("owner", "recipient"):
        http.ok("PUT", f"/v1/accounts/{account}", {"name": account, "business_center_id": "bc1"})
    http.ok("POST", "/v1/accounts/owner/terms-acceptance", account="owner")
    http.ok("POST", "/v1/audiences", {"id": "C", "name": "Buyers", "source": "customer_file", "member_count": 5},
            account="owner")
    http.ok("POST", "/v1/audiences/C/lookalikes", {"id": "L", "name": "Like buyers"}, account="owner")
    for audience in ("C", "L"):
        http.ok("POST", f"/v1/audiences/{audience}/shares", {"account_ids": ["recipient"]}, account="owner")


def _error(answer, status, code):
    assert answer.status_code == status, answer.get_json()
    error = answer.get_json()["error"]
    assert error["code"] == code, error
    assert "cannot be carried out" in error["message"]
    return error


def _permissive(tmp_path):
    """Every deny line of the shipped policy turned into an allow, but those whose codes the
    code relies on (contract.POLICY_GIVEN_REASONS: unknown or not visible, applied to ad groups), which
    `policy check` requires (its tests and properties dropped: they say otherwise); `policy
    check` still passes, so the server serves it."""
    policy = copy_policy(tmp_path / "permissive")
    shutil.rmtree(policy / "tests")
    (policy / "properties.yaml").unlink()
    text = (policy / "policy.csv").read_text()
    kept = "|".join(code + "," for code in POLICY_GIVEN_REASONS)
    (policy / "policy.csv").write_text(re.sub(rf", deny, (?!{kept})", ", allow, ", text))
    assert cli("policy", "check", policy).exit_code == 0
    return policy


def test_the_old_worked_example_refuses_refreshing_a_custom_audience(tmp_path):
    """The issue's case: recipients allowed to refresh anything they received; a shared
    custom audience has no seed, so its refresh is a 409, not a 500."""
    policy = copy_policy(tmp_path / "policy")
    replace(policy / "policy.csv", RECIPIENT_REFRESH_DENY, RECIPIENT_REFRESH_ALLOW)
    shutil.rmtree(policy / "tests")  # they, and the property recipient_cannot_manage, say otherwise
    (policy / "properties.yaml").unlink()
    http = Http(tmp_path, policy)
    _world(http)
    _error(http.call("POST", "/v1/audiences/C/refresh", account="recipient"), 409, "not_a_lookalike")
    assert http.ok("GET", "/v1/audiences/C", account="owner")["revision"] == 1  # nothing changed
    refreshed = http.ok("POST", "/v1/audiences/L/refresh", account="recipient")
    assert refreshed["audience"]["member_count"] == 50 and refreshed["audience"]["relation"] == "recipient"


def test_a_permissive_policy_gets_4xx_for_what_cannot_be_done(tmp_path):
    http = Http(tmp_path, _permissive(tmp_path))
    _world(http)
    _error(http.call("POST", "/v1/audiences/C/refresh", account="owner"), 409, "not_a_lookalike")
    _error(http.call("POST", "/v1/audiences/C/shares", {"account_ids": ["recipient"]}, account="owner"),
           409, "already_shared")
    _error(http.call("POST", "/v1/audiences/C/shares", {"account_ids": ["nobody"]}, account="owner"),
           422, "unknown_target_account")
    _error(http.call("POST", "/v1/audiences", {"name": "x", "source": "customer_file"}, account="ghost"),
           422, "unknown_acting_account")
    _error(http.call("POST", "/v1/audiences/C/lookalikes", {"name": "x"}, account="ghost"),
           422, "unknown_acting_account")
    _error(http.call("PUT", "/v1/ad-groups/g1", {"name": "g", "include": ["C"]}, account="ghost"),
           422, "unknown_acting_account")
    # a shares list of the recipient still shows exactly the one share; no ad group was made
    assert [s["account_id"] for s in http.ok("GET", "/v1/audiences/C/shares", account="owner")["shares"]] == ["recipient"]
    assert http.call("GET", "/v1/ad-groups/g1", account="owner").status_code == 404


def test_a_policy_that_allows_everything_everywhere(tmp_path):
    """One line allowing every request, even on audiences and ad groups that do not exist
    (before it, only the deny lines the contract requires, on requests this test never makes:
    an owner's view of an unknown audience, a delete of an audience in ad groups, and three
    recipient requests that carry the other codes the code answers 404 for)."""
    policy = _permissive(tmp_path)
    (policy / "policy.csv").write_text("p, owner, view, not r.f.audience_known, deny, unknown_audience,\n"
                                       "p, owner, delete, r.f.attached_ad_groups > 0, deny, applied_to_ad_groups,\n"
                                       "p, recipient, edit, r.f.audience_known, deny, no_access,\n"
                                       "p, recipient, stop_sharing, r.f.audience_known, deny, unknown_ad_group,\n"
                                       "p, recipient, create_lookalike, r.f.audience_known, deny, ad_group_not_owned,\n"
                                       "p, *, *, True, allow, anything, propagate_update\n")
    assert cli("policy", "check", policy).exit_code == 0
    http = Http(tmp_path, policy)
    _world(http)
    assert http.call("POST", "/v1/audiences/nope/lookalikes", {"name": "x"}, account="owner").status_code == 404
    assert http.call("POST", "/v1/audiences/nope/refresh", account="owner").status_code == 404
    assert http.call("PATCH", "/v1/audiences/nope", {"name": "x"}, account="owner").status_code == 404
    _error(http.call("PUT", "/v1/ad-groups/g2", {"name": "g", "include": ["nope"]}, account="owner"),
           422, "unknown_audience")


def _worked_example_lines() -> tuple[str, str, str]:
    """The policy.csv change, the test cases and the property the worked example of the docs gives."""
    doc = (ROOT / "docs" / "policy-authoring.md").read_text()
    section = doc[doc.index("## Worked example"):]
    blocks = re.findall(r"```(\w*)\n(.*?)```", section, re.S)
    csv = next(body for lang, body in blocks if lang == "text" and "recipient_may_refresh_lookalike" in body)
    cases = next(body for lang, body in blocks if lang == "yaml" and "recipient_may_refresh_lookalike" in body)
    prop = next(body for lang, body in blocks if lang == "yaml" and "recipient_cannot_manage" in body)
    return csv, cases, prop


@pytest.mark.full  # a solver or a reload of its own: seconds each
def test_the_worked_example_as_documented_is_right(tmp_path):
    csv, cases, prop = _worked_example_lines()
    policy = copy_policy(tmp_path / "policy")
    replace(policy / "policy.csv", RECIPIENT_REFRESH_DENY + "\n", csv)
    matrix = policy / "tests" / "matrix.yaml"
    text = matrix.read_text()
    start = text.index("  - name: recipient cannot refresh a lookalike\n")
    end = text.index("  - name: stranger cannot refresh a lookalike\n")
    matrix.write_text(text[:start] + cases + text[end:])
    assert cli("policy", "check", policy).exit_code == 0
    tested = cli("policy", "test", "--policy-dir", policy, "-q")
    assert tested.exit_code == 0 and "0 failed, 0 errors, 0 coverage gaps" in tested.output, tested.output
    assert "FAILED properties.yaml:13  recipient_cannot_manage" in cli("policy", "verify", "--policy-dir", policy).output
    properties = policy / "properties.yaml"
    text = properties.read_text()
    start = text.index("  - name: recipient_cannot_manage\n")
    end = text.index("\n", text.index("    then:", start)) + 1
    properties.write_text(text[:start] + prop + text[end:])
    verified = cli("policy", "verify", "--policy-dir", policy)
    assert verified.exit_code == 0 and "0 failed, 0 errors" in verified.output, verified.output
    http = Http(tmp_path, policy)
    _world(http)
    assert http.ok("POST", "/v1/audiences/L/refresh", account="recipient")["effects"][0]["type"] == "propagate_update"
    denied = http.call("POST", "/v1/audiences/C/refresh", account="recipient")
    assert denied.status_code == 403 and [r["code"] for r in denied.get_json()["reasons"]] == ["not_lookalike"]


@pytest.mark.parametrize("account", ["owner", "recipient"])
def test_the_fixture_policy_still_denies_first(tmp_path, account):
    """With the policy the tests serve the rule answers (a 403 deny), before any guard."""
    http = Http(tmp_path, FIXTURE_POLICY)
    _world(http)
    denied = http.call("POST", "/v1/audiences/C/refresh", account=account)
    assert denied.status_code == 403
    assert [r["code"] for r in denied.get_json()["reasons"]] == (
        ["not_lookalike"] if account == "owner" else ["recipient_action_forbidden"])

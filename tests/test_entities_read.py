"""Reading an account and a Business Center: who may is the policy's view_account and
view_business_center (the account itself and its Business Center's accounts)."""

from __future__ import annotations

from tests.support import world_factory


def test_an_account_is_read_by_itself_and_its_business_center_only(api):
    w = world_factory(api)
    mine = api.ok(api.get(f"/v1/accounts/{w.recipient}", account=w.recipient))
    assert mine["id"] == w.recipient and mine["business_center_id"] == w.bc and mine["name"] == "recipient"
    assert mine["terms_accepted_at"] is None
    owner = api.ok(api.get(f"/v1/accounts/{w.owner}", account=w.peer))  # same Business Center
    assert owner["business_center_id"] == w.bc and owner["terms_accepted_at"]
    for stranger in (w.other, w.nobc):
        denied = api.get(f"/v1/accounts/{w.owner}", account=stranger)
        assert denied.status == 403 and denied.codes == ["not_in_account_business_center"], denied.body
        assert "owner" not in str(denied.body.get("name", ""))
    assert api.ok(api.get(f"/v1/accounts/{w.nobc}", account=w.nobc))["business_center_id"] is None
    # two accounts without a Business Center are not "in the same one"
    api.ok(api.put(f"/v1/accounts/{w.id('nobc2')}", {"name": "n2", "business_center_id": None}))
    assert api.get(f"/v1/accounts/{w.nobc}", account=w.id("nobc2")).codes == ["not_in_account_business_center"]
    assert api.get(f"/v1/accounts/{w.owner}", account=f"ghost_{w.u}").codes == ["unknown_principal"]
    missing = api.get(f"/v1/accounts/ghost_{w.u}", account=w.owner)
    assert missing.status == 404 and missing.body["error"]["code"] == "unknown_account"
    assert api.get(f"/v1/accounts/{w.owner}").status == 400  # the acting account is required


def test_a_business_center_is_read_by_its_accounts_only(api):
    w = world_factory(api)
    bc = api.ok(api.get(f"/v1/business-centers/{w.bc}", account=w.recipient))
    assert bc == {"id": w.bc, "name": "BC", "cross_bc_allowlisted": False}
    for stranger in (w.other, w.nobc):
        denied = api.get(f"/v1/business-centers/{w.bc}", account=stranger)
        assert denied.status == 403 and denied.codes == ["not_in_business_center"], denied.body
    assert api.ok(api.get(f"/v1/business-centers/{w.bc2}", account=w.other))["name"] == "BC 2"
    missing = api.get(f"/v1/business-centers/ghost_{w.u}", account=w.owner)
    assert missing.status == 404


def test_reads_are_decisions_in_the_log(api):
    w = world_factory(api)
    api.get(f"/v1/accounts/{w.owner}", account=w.other)
    decisions, after = [], 0
    while (page := api.ok(api.get(f"/v1/decisions?after={after}&limit=1000")))["decisions"]:
        decisions += page["decisions"]
        after = page["next_after"]
    mine = [d for d in decisions if d.get("principal") == w.other or d.get("principal_account_id") == w.other]
    assert any(d["action"] == "view_account" and d["decision"] == "deny" for d in mine), mine[-3:]

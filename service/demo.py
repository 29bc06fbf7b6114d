"""The source's scenario as demo data: one Business Center, the data owner, recipients,
audiences A, B and C shared with a recipient, and the recipient's ad groups of the
source's table (include A, exclude A, include A+B+C, exclude A+B+C, include A exclude B)."""

from __future__ import annotations

from . import actions
from .authorizer import Authorizer
from .models import Audience

BUSINESS_CENTERS = [("bc_1", "Demo Business Center", False), ("bc_2", "Agency Business Center", False)]
ACCOUNTS = [
    ("acc_owner", "Data owner", "bc_1"),
    ("acc_recipient", "Performance agency account", "bc_1"),
    ("acc_peer", "Another account of the Business Center", "bc_1"),
    ("acc_other_bc", "Account of another Business Center", "bc_2"),
    ("acc_no_bc", "Account owned by no Business Center", None),
]
AUDIENCES = [("aud_A", "Pixel visitors (A)", "website_traffic"),
             ("aud_B", "Customer file (B)", "customer_file"),
             ("aud_C", "Video engagers (C)", "engagement")]
AD_GROUPS = [
    ("ag_include_A", ["aud_A"], []),
    ("ag_exclude_A", [], ["aud_A"]),
    ("ag_include_ABC", ["aud_A", "aud_B", "aud_C"], []),
    ("ag_exclude_ABC", [], ["aud_A", "aud_B", "aud_C"]),
    ("ag_include_A_exclude_B", ["aud_A"], ["aud_B"]),
]


def load(authz: Authorizer) -> list[str]:
    """Load the scenario; returns what was done (nothing when it is already there)."""
    if Audience.select().where(Audience.id == "aud_A").exists():
        return []
    done = []
    for bc_id, name, allowlisted in BUSINESS_CENTERS:
        actions.upsert_business_center(authz, bc_id, name, allowlisted)
    for account_id, name, bc_id in ACCOUNTS:
        actions.upsert_account(authz, account_id, name, bc_id)
    done.append(f"{len(BUSINESS_CENTERS)} Business Centers, {len(ACCOUNTS)} accounts")
    actions.accept_terms(authz, "acc_owner", "acc_owner")
    for audience_id, name, source in AUDIENCES:
        actions.create_audience(authz, "acc_owner", audience_id, name, source, 10000)
        actions.share(authz, "acc_owner", audience_id, ["acc_recipient"])
    done.append("audiences aud_A, aud_B, aud_C owned by acc_owner, shared with acc_recipient")
    for ad_group_id, include, exclude in AD_GROUPS:
        actions.upsert_ad_group(authz, "acc_recipient", ad_group_id, ad_group_id.replace("_", " "),
                                include, exclude)
    done.append(f"{len(AD_GROUPS)} ad groups of acc_recipient: " + ", ".join(a for a, _, _ in AD_GROUPS))
    return done

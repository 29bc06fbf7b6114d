"""The source's scenario as demo data: one Business Center, the data owner, recipients,
audiences A, B and C shared with a recipient, and the recipient's ad groups of the
source's table (include A, exclude A, include A+B+C, exclude A+B+C, include A exclude B)."""

from __future__ import annotations

import json

from audience_authz import bulk
from audience_authz.engine.authorizer import Authorizer
from audience_authz.store.models import Audience

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


def records() -> list[dict]:
    """The scenario as lines of the bulk import (bulk.py), in the order they apply."""
    lines = [{"kind": "business_center", "id": bc_id, "name": name, "cross_bc_allowlisted": allowlisted}
             for bc_id, name, allowlisted in BUSINESS_CENTERS]
    lines += [{"kind": "account", "id": account_id, "name": name, "business_center_id": bc_id}
              for account_id, name, bc_id in ACCOUNTS]
    lines.append({"kind": "terms_acceptance", "account_id": "acc_owner"})
    for audience_id, name, source in AUDIENCES:
        lines.append({"kind": "audience", "account_id": "acc_owner", "id": audience_id, "name": name,
                      "source": source, "member_count": 10000})
        lines.append({"kind": "share", "account_id": "acc_owner", "audience_id": audience_id,
                      "account_ids": ["acc_recipient"]})
    lines += [{"kind": "ad_group", "account_id": "acc_recipient", "id": ad_group_id,
               "name": ad_group_id.replace("_", " "), "include": include, "exclude": exclude}
              for ad_group_id, include, exclude in AD_GROUPS]
    return lines


def load(authz: Authorizer, on_line=None) -> list[str]:
    """Load the scenario through the actions (and so the policy); returns what was done
    (nothing when it is already there). ``on_line()`` after each line (a progress bar)."""
    if Audience.select().where(Audience.id == "aud_A").exists():
        return []
    summary = bulk.import_lines(authz, [json.dumps(r) for r in records()], on_line=on_line)
    if not summary.ok:
        raise RuntimeError(f"the demo data did not load: {summary.problems}")
    return [
        f"{len(BUSINESS_CENTERS)} Business Centers, {len(ACCOUNTS)} accounts",
        "audiences aud_A, aud_B, aud_C owned by acc_owner, shared with acc_recipient",
        f"{len(AD_GROUPS)} ad groups of acc_recipient: " + ", ".join(a for a, _, _ in AD_GROUPS),
    ]

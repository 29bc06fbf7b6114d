"""The names the code relies on: relations, actions, reason codes, effects, fact types.

The policy files may use only these names (``policy check`` refuses others), and the code
branches on no other. It sits below every layer, so that the store, the engine and the
policy tools read the same list. What the code *relies on* the policy to provide (the facts
it gathers, the reason codes it branches on, the pairs it asks) is ``contract.py``.
"""

from __future__ import annotations

POLICY_FILES = ("model.conf", "policy.csv", "facts.yaml", "reasons.yaml")
OPTIONAL_FILES = ("properties.yaml",)  # read with the policy when present (policy verify)

# an account's relation to an audience, and to an account or ad group
AUDIENCE_RELATIONS = ("owner", "recipient", "none")
ACCOUNT_RELATIONS = ("self", "other", "new")
RELATIONS = AUDIENCE_RELATIONS + ACCOUNT_RELATIONS

# the source's table, in its order
MATRIX_ACTIONS = (
    "view",
    "edit",
    "apply",
    "delete",
    "share",
    "stop_sharing",
    "create_lookalike",
    "refresh_lookalike",
)
AUDIENCE_ACTIONS = MATRIX_ACTIONS + ("view_shares",)
ACCOUNT_ACTIONS = ("accept_terms", "list_audiences", "create_audience", "view_ad_group", "edit_ad_group",
                   "resume_ad_group", "view_account", "view_business_center")
# asked by the service itself of an active share when its sharing scope changed
SCOPE_ACTIONS = ("keep_share",)
ACTIONS = AUDIENCE_ACTIONS + ACCOUNT_ACTIONS + SCOPE_ACTIONS

# reason codes the service gives itself: when it fails closed, and when no line decides
FAULT_REASONS = ("internal_error", "database_unavailable")
SERVICE_REASONS = ("no_matching_rule", *FAULT_REASONS)

# effects the store can apply, and what an ad group whose include list empties does
EFFECTS = frozenset({"end_share", "remove_from_list", "disconnect_audience", "propagate_update"})
DISCONNECT_OUTCOMES = frozenset({"broaden", "pause"})

# the types a fact of facts.yaml may declare
FACT_TYPES = {"bool": bool, "int": int, "str": str}

# The five shareable sources of the source text, and others the platform also has (which
# the policy refuses to share).
SOURCES = ("engagement", "app_activity", "website_traffic", "customer_file", "partner",
           "lead_generation", "shop_activity")

MAX_MEMBERS = 10**12
"""The largest member count the API takes, and the most any stored count becomes:
arithmetic on counts (adding members, a lookalike's ten times its seed) saturates here
instead of failing after the policy allowed the action."""


def bounded_members(count: int) -> int:
    """A member count kept within 0..MAX_MEMBERS."""
    return max(0, min(count, MAX_MEMBERS))

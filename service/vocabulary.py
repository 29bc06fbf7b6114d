"""The names the code relies on: relations, actions, reason codes, effects, fact types.

The policy files may use only these names (``policy check`` refuses others), and the code
branches on no other. It sits below every layer, so that the store, the engine and the
policy tools read the same list.
"""

from __future__ import annotations

POLICY_FILES = ("model.conf", "policy.csv", "facts.yaml", "reasons.yaml")

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
                   "resume_ad_group")
# asked by the service itself of an active share when its sharing scope changed
SCOPE_ACTIONS = ("keep_share",)
ACTIONS = AUDIENCE_ACTIONS + ACCOUNT_ACTIONS + SCOPE_ACTIONS

# reason codes the service gives itself: when it fails closed, and when no line decides
FAULT_REASONS = ("internal_error", "database_unavailable")
SERVICE_REASONS = ("no_matching_rule", *FAULT_REASONS)

# Denies that mean the acting account has no relation to the thing it named: account-facing
# endpoints answer them exactly as an unknown id (404), so that no account learns whether
# another account's audience or ad group exists (docs/visibility.md). /v1/authorize, the
# platform's question, keeps the reason the policy gave.
NOT_VISIBLE_REASONS = {"audience": ("unknown_audience", "no_access"), "ad_group": ("unknown_ad_group", "ad_group_not_owned")}

# effects the store can apply, and what an ad group whose include list empties does
EFFECTS = frozenset({"end_share", "remove_from_list", "disconnect_audience", "propagate_update"})
DISCONNECT_OUTCOMES = frozenset({"broaden", "pause"})

# the types a fact of facts.yaml may declare
FACT_TYPES = {"bool": bool, "int": int, "str": str}

# The five shareable sources of the source text, and others the platform also has (which
# the policy refuses to share).
SOURCES = ("engagement", "app_activity", "website_traffic", "customer_file", "partner",
           "lead_generation", "shop_activity")

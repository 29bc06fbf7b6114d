"""The contract between the code and the policy files: what the code relies on.

A policy author may change any rule by editing ``policy/``; what the *code* does with the
answers is fixed, and this module says what that is. ``policy check`` (and so ``policy
test``, ``policy diff``, ``policy verify`` and every hot reload) refuses a candidate that
breaks it, each problem with its file and line:

* ``FACTS``: every fact the gatherer (``engine/facts.py``) fills, with its type. facts.yaml
  must declare exactly these, with these types: a fact it lacks makes every decision fail
  (the gatherer passes it by name), and a fact the service never gathers would silently
  keep its default.
* ``ACCOUNT_ACTION_FACTS``: the few facts gathered for an action on an account's own
  things; the others keep their declared defaults there.
* ``ASKED``: every (relation, action) the service can ask, each of which must be decided.
* ``RELIED_REASONS``: the deny codes the code branches on or maps to an HTTP status, and
  where; reasons.yaml must list them and policy.csv must give them.
* ``EFFECTS``: the effects the store can apply, with the arguments each takes.

It sits at the base layer beside ``vocabulary`` so every layer reads one list; the test
``tests/test_policy_contract.py`` proves the lists match what the gatherer and the actions
really do.
"""

from __future__ import annotations

from audience_authz.vocabulary import (
    ACCOUNT_ACTIONS,
    AUDIENCE_ACTIONS,
    AUDIENCE_RELATIONS,
    DISCONNECT_OUTCOMES,
    SERVICE_REASONS,
)
from audience_authz.vocabulary import EFFECTS as VOCABULARY_EFFECTS

# -- facts -------------------------------------------------------------------------------------
# name -> type, in the order engine/facts.py gathers them for an action on an audience
FACTS: dict[str, type] = {
    "principal_known": bool,
    "principal_in_bc": bool,
    "principal_terms_accepted": bool,
    "audience_known": bool,
    "audience_type": str,
    "audience_source": str,
    "audience_status": str,
    "seed_status": str,
    "seed_source": str,
    "owner_bc_allowlisted": bool,
    "target_specified": bool,
    "target_known": bool,
    "target_in_bc": bool,
    "target_is_self": bool,
    "same_bc": bool,
    "target_has_share": bool,
    "ad_group_specified": bool,
    "ad_group_known": bool,
    "ad_group_owned": bool,
    "attached_ad_groups": int,
}
_AD_GROUP_FACTS = ("principal_known", "ad_group_known", "ad_group_owned")
ACCOUNT_ACTION_FACTS: dict[str, tuple[str, ...]] = {
    "accept_terms": ("principal_known",),
    "list_audiences": ("principal_known",),
    "create_audience": ("principal_known",),
    "view_ad_group": _AD_GROUP_FACTS,
    "edit_ad_group": _AD_GROUP_FACTS,
    "resume_ad_group": _AD_GROUP_FACTS,  # paused -> enabled, asked of a stored ad group
    # reading an account (self or other) or a Business Center (self: the acting account's own)
    "view_account": ("principal_known", "principal_in_bc", "target_specified", "target_known", "target_in_bc",
                     "same_bc"),
    "view_business_center": ("principal_known", "principal_in_bc"),
}
assert set(ACCOUNT_ACTION_FACTS) == set(ACCOUNT_ACTIONS)


def gathered_facts(action: str) -> tuple[str, ...]:
    """The facts the gatherer sets for ``action``; the others keep their declared defaults."""
    return ACCOUNT_ACTION_FACTS.get(action, tuple(FACTS))


# -- the questions the service asks ------------------------------------------------------------
# an audience action is asked by the API (actions and /v1/authorize) with the relation the
# gatherer finds; keep_share only of an audience's owner (actions/sharing_scope.py); an account
# action with self/other (the account is the principal or not), an ad group one also with new
ASKED: tuple[tuple[str, str], ...] = (
    *((rel, act) for act in AUDIENCE_ACTIONS for rel in AUDIENCE_RELATIONS),
    ("owner", "keep_share"),
    ("self", "accept_terms"), ("other", "accept_terms"),
    ("self", "list_audiences"), ("other", "list_audiences"),
    ("self", "create_audience"),
    *((rel, act) for act in ("view_ad_group", "edit_ad_group", "resume_ad_group")
      for rel in ("self", "other", "new")),
    *((rel, act) for act in ("view_account", "view_business_center") for rel in ("self", "other")),
)

# -- reason codes the code relies on -----------------------------------------------------------
UNKNOWN_AUDIENCE = "unknown_audience"
APPLIED_TO_AD_GROUPS = "applied_to_ad_groups"
NO_ACCESS = "no_access"
UNKNOWN_AD_GROUP = "unknown_ad_group"
AD_GROUP_NOT_OWNED = "ad_group_not_owned"
# Denies that mean the acting account has no relation to the thing it named: account-facing
# endpoints answer them exactly as an unknown id (404), so that no account learns whether
# another account's audience or ad group exists (docs/visibility.md). /v1/authorize, the
# platform's question, keeps the reason the policy gave.
NOT_VISIBLE_REASONS = {"audience": (UNKNOWN_AUDIENCE, NO_ACCESS), "ad_group": (UNKNOWN_AD_GROUP, AD_GROUP_NOT_OWNED)}
NO_MATCHING_RULE, INTERNAL_ERROR, DATABASE_UNAVAILABLE = SERVICE_REASONS
# code -> (module that relies on it, what it does with it), for the messages of `policy check`
RELIED_REASONS: dict[str, tuple[str, str]] = {
    UNKNOWN_AUDIENCE: ("actions/steps.py", "answers 404 Not Found instead of 403 for it"),
    NO_ACCESS: ("actions/steps.py", "answers 404 Not Found for it, as for an unknown audience (visibility)"),
    UNKNOWN_AD_GROUP: ("actions/steps.py", "answers 404 Not Found instead of 403 for it"),
    AD_GROUP_NOT_OWNED: ("actions/steps.py", "answers 404 Not Found for it, as for an unknown ad group (visibility)"),
    APPLIED_TO_AD_GROUPS: ("engine/authorizer.py", "adds the attached ad_group_ids to it"),
    NO_MATCHING_RULE: ("engine/policy.py", "gives it when no line decides"),
    INTERNAL_ERROR: ("http/errors.py", "gives it (500) when a decision fails"),
    DATABASE_UNAVAILABLE: ("http/errors.py", "gives it (503) when the database is unreachable"),
}
# the codes a policy line must give (the others the service gives by itself)
POLICY_GIVEN_REASONS = (UNKNOWN_AUDIENCE, NO_ACCESS, UNKNOWN_AD_GROUP, AD_GROUP_NOT_OWNED, APPLIED_TO_AD_GROUPS)

# -- effects -----------------------------------------------------------------------------------
# effect -> the arguments it takes (empty: none), as store/effects.py applies them
EFFECTS: dict[str, frozenset[str]] = {
    "end_share": frozenset(),
    "remove_from_list": frozenset(),
    "propagate_update": frozenset(),
    "disconnect_audience": DISCONNECT_OUTCOMES,
}
assert set(EFFECTS) == VOCABULARY_EFFECTS

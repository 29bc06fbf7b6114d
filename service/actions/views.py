"""What an account sees of an entity: the JSON views of accounts, audiences and ad groups,
and the actions the policy allows an account on an audience."""

from __future__ import annotations

import dataclasses

from audience_authz.engine.authorizer import Authorizer, with_some_target
from audience_authz.store.models import Account, AdGroup, AdGroupAudience, Audience
from audience_authz.vocabulary import MATRIX_ACTIONS


def account_view(account: Account) -> dict:
    return {
        "id": account.id, "name": account.name, "business_center_id": account.business_center_id,
        "terms_accepted_at": iso(account.terms_accepted_at),
    }



def audience_view(audience: Audience, relation: str, actions: list[str]) -> dict:
    """What ``relation`` sees of the audience: a lookalike's seed is the owner's private
    audience, named to the owner only (docs/visibility.md)."""
    return {
        "id": audience.id, "name": audience.name, "type": audience.type, "source": audience.source or None,
        "seed_audience_id": audience.seed_audience_id if relation == "owner" else None,
        "owner_account_id": audience.owner_account_id, "status": audience.status,
        "member_count": audience.member_count, "revision": audience.revision,
        "created_at": iso(audience.created_at), "updated_at": iso(audience.updated_at),
        "deleted_at": iso(audience.deleted_at), "relation": relation, "actions": actions,
    }



def allowed_actions(authz: Authorizer, gathered) -> list[str]:
    """The matrix actions the policy allows this account on this audience. ``share`` is
    asked of a would-be target in the same Business Center with no share yet, ``apply``
    as /v1/authorize asks it without an ad group (in the account's own ad groups),
    ``stop_sharing`` of all recipients."""
    policy = authz.policy
    facts = gathered.facts
    hypothetical = {
        "share": with_some_target(facts),
        "apply": dataclasses.replace(facts, ad_group_specified=False),
        "stop_sharing": dataclasses.replace(facts, target_specified=False),
    }
    return [act for act in MATRIX_ACTIONS
            if policy.decide(gathered.relation, act, hypothetical.get(act, facts)).allowed]



def ad_group_view(group: AdGroup) -> dict:
    targeting = {"include": [], "exclude": []}
    for row in (AdGroupAudience.select().where(AdGroupAudience.ad_group == group.id)
                .order_by(AdGroupAudience.mode, AdGroupAudience.position)):
        targeting[row.mode].append(row.audience_id)
    return {"id": group.id, "account_id": group.account_id, "name": group.name, "status": group.status,
            **targeting, "no_audience_targeting": not targeting["include"] and not targeting["exclude"],
            "updated_at": iso(group.updated_at)}



def iso(value) -> str | None:
    return None if value is None else value.isoformat(timespec="microseconds") + "Z"

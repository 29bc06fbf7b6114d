"""Ad groups: read, and upsert with the audiences they include and exclude."""

from __future__ import annotations

from audience_authz.actions import preconditions
from audience_authz.actions.steps import as_unknown_audience, denied_if_any, raise_if_not_visible, record_event
from audience_authz.actions.views import ad_group_view
from audience_authz.engine.authorizer import Authorizer
from audience_authz.engine.facts import Request
from audience_authz.exceptions import Denied, NotFound
from audience_authz.store.locks import lock_ad_group, lock_audiences
from audience_authz.store.models import AdGroup, AdGroupAudience, utcnow
from audience_authz.store.transactions import run


def get_ad_group(authz: Authorizer, principal: str, ad_group_id: str) -> dict:
    def work():
        group = AdGroup.get_or_none(AdGroup.id == ad_group_id)
        if group is None:
            raise NotFound("ad_group", ad_group_id)
        outcome = authz.check(Request(principal, "view_ad_group", "", ad_group_id=ad_group_id))
        raise_if_not_visible(outcome, "ad_group", ad_group_id)  # another account's: as unknown
        if not outcome.allowed:
            return Denied([outcome])
        return ad_group_view(group)
    return run(work, snapshot=True)



def upsert_ad_group(authz: Authorizer, principal: str, ad_group_id: str, name: str,
                    include: list[str], exclude: list[str], status: str | None = None) -> dict:
    """``status`` None keeps the stored one (enabled when new); paused -> enabled is also
    the policy's ``resume_ad_group``."""
    def work():
        lock_ad_group(ad_group_id)
        # the audiences it targets now and will target: a concurrent stop sharing or delete
        # of any of them either sees this upsert whole or comes after it
        current = AdGroupAudience.select(AdGroupAudience.audience).where(AdGroupAudience.ad_group == ad_group_id)
        lock_audiences({*include, *exclude, *(row.audience_id for row in current)})
        outcome = authz.check(Request(principal, "edit_ad_group", "", ad_group_id=ad_group_id))
        if not outcome.allowed:
            return Denied([outcome])
        stored = AdGroup.select(AdGroup.status).where(AdGroup.id == ad_group_id).scalar()
        if stored == "paused" and status == "enabled":
            resume = authz.check(Request(principal, "resume_ad_group", "", ad_group_id=ad_group_id))
            if not resume.allowed:
                return Denied([resume])
        applies = [authz.check(Request(principal, "apply", audience_id, ad_group_id=ad_group_id),
                               ad_group_override=(ad_group_id, principal))
                   for audience_id in [*include, *exclude]]
        for check in applies:
            if not check.allowed:
                as_unknown_audience(authz, check)
                check.reasons[0]["audience_id"] = check.request.audience_id
        denied = denied_if_any(applies)
        if denied:
            return denied
        preconditions.acting_account_exists(principal, "an ad group")
        preconditions.audiences_exist([*include, *exclude])
        created = outcome.gathered.relation == "new"
        if not created:  # the same name, targeting and status again: nothing changes, no event
            view = ad_group_view(AdGroup.get_by_id(ad_group_id))
            if ((view["name"], view["include"], view["exclude"]) == (name, list(include), list(exclude))
                    and status in (None, view["status"])):
                return {"ad_group": view, "created": False, "effects": []}
        update = {AdGroup.name: name, AdGroup.updated_at: utcnow()}
        if status is not None:
            update[AdGroup.status] = status
        AdGroup.insert(id=ad_group_id, account=principal, name=name, status=status or "enabled",
                       updated_at=utcnow()).on_conflict(conflict_target=[AdGroup.id], update=update).execute()
        AdGroupAudience.delete().where(AdGroupAudience.ad_group == ad_group_id).execute()
        rows = [{"ad_group": ad_group_id, "audience": a, "mode": mode, "position": i}
                for mode, ids in (("include", include), ("exclude", exclude)) for i, a in enumerate(ids)]
        if rows:
            AdGroupAudience.insert_many(rows).execute()
        record_event("ad_group_upserted", outcome, ad_group_id=ad_group_id, account_id=principal, name=name,
               include=include, exclude=exclude, created=created,
               status=AdGroup.get_by_id(ad_group_id).status)
        return {"ad_group": ad_group_view(AdGroup.get_by_id(ad_group_id)), "created": created,
                "effects": []}
    return run(work)

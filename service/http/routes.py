"""The HTTP routes of SPEC §4: validate, call the action, answer JSON."""

from __future__ import annotations

from flask import current_app
from flask_openapi3 import APIBlueprint, Tag

from audience_authz import actions
from audience_authz.engine import decision_log
from audience_authz.http import responses as R
from audience_authz.engine.authorizer import Authorizer
from audience_authz.engine.facts import Request
from audience_authz.http.schemas import (AccountBody, ActingAccount, AdGroupBody, AudienceCreateBody, AudiencePatchBody,
                      AuthorizeBody, BatchBody, BusinessCenterBody, IdPath, LookalikeBody, Page,
                      ShareBody, ShareTargetPath)

api = APIBlueprint("api", __name__, url_prefix="/v1", abp_security=[{"bearer": []}],
                   abp_responses=R.COMMON)
# the decision endpoints: a blueprint of their own, whose faults are denies (errors.fail_closed)
decide = APIBlueprint("authorize", __name__, url_prefix="/v1", abp_security=[{"bearer": []}],
                      abp_responses=R.COMMON)
ENTITIES, AUDIENCES, SHARING, AD_GROUPS, DECIDE, FEEDS = (
    Tag(name=n) for n in ("entities", "audiences", "sharing", "ad groups", "authorize", "feeds"))


def authz() -> Authorizer:
    return current_app.extensions["authz"]


# -- entities ------------------------------------------------------------------------------

@api.put("/business-centers/<id>", tags=[ENTITIES], summary="Upsert a Business Center",
         responses={200: R.BusinessCenterView})
def put_business_center(path: IdPath, body: BusinessCenterBody):
    return actions.upsert_business_center(authz(), path.id, body.name, body.allowlisting())


@api.put("/accounts/<id>", tags=[ENTITIES], summary="Upsert an ad account",
         responses={200: R.AccountView, 404: R.ErrorBody})
def put_account(path: IdPath, body: AccountBody):
    return actions.upsert_account(authz(), path.id, body.name, body.business_center())


@api.post("/accounts/<id>/terms-acceptance", tags=[ENTITIES],
          summary="Record the account's acceptance of the Custom Audience Terms",
          responses={200: R.AccountView, **R.ACTING})
def post_terms(path: IdPath, header: ActingAccount):
    return actions.accept_terms(authz(), header.x_account_id, path.id)


@api.get("/accounts/<id>/audiences", tags=[AUDIENCES],
         summary="Owned and shared-with-me audiences, with relation and allowed actions",
         responses={200: R.AudienceList, **R.ACTING})
def get_account_audiences(path: IdPath, header: ActingAccount):
    return actions.list_audiences(authz(), header.x_account_id, path.id)


# -- audiences -----------------------------------------------------------------------------

@api.post("/audiences", tags=[AUDIENCES], summary="Create a custom audience",
          responses={201: R.AudienceResult, 409: R.ErrorBody, **R.ACTING})
def post_audience(header: ActingAccount, body: AudienceCreateBody):
    result = actions.create_audience(authz(), header.x_account_id, body.id, body.name, body.source,
                                     body.member_count)
    return result, 201


@api.get("/audiences/<id>", tags=[AUDIENCES], summary="The audience as the acting account sees it",
         responses={200: R.AudienceView, **R.ACTING})
def get_audience(path: IdPath, header: ActingAccount):
    return actions.get_audience(authz(), header.x_account_id, path.id)


@api.patch("/audiences/<id>", tags=[AUDIENCES], summary="Edit: rename, add/remove/replace members",
           responses={200: R.AudienceResult, **R.ACTING})
def patch_audience(path: IdPath, header: ActingAccount, body: AudiencePatchBody):
    members = body.members.model_dump() if body.members else None
    return actions.edit_audience(authz(), header.x_account_id, path.id, body.name, members)


@api.delete("/audiences/<id>", tags=[AUDIENCES],
            summary="Delete (owner) or remove from the own list (recipient)",
            responses={200: R.DeleteResult, **R.ACTING})
def delete_audience(path: IdPath, header: ActingAccount):
    return actions.delete_audience(authz(), header.x_account_id, path.id)


@api.post("/audiences/<id>/lookalikes", tags=[AUDIENCES], summary="Create a lookalike from a custom audience",
          responses={201: R.AudienceResult, 409: R.ErrorBody, **R.ACTING})
def post_lookalike(path: IdPath, header: ActingAccount, body: LookalikeBody):
    return actions.create_lookalike(authz(), header.x_account_id, path.id, body.id, body.name), 201


@api.post("/audiences/<id>/refresh", tags=[AUDIENCES], summary="Refresh a lookalike",
          responses={200: R.AudienceResult, **R.ACTING})
def post_refresh(path: IdPath, header: ActingAccount):
    return actions.refresh_lookalike(authz(), header.x_account_id, path.id)


# -- sharing -------------------------------------------------------------------------------

@api.post("/audiences/<id>/shares", tags=[SHARING], summary="Share with 1 to 100 accounts, all or nothing",
          responses={201: R.ShareResult, **R.ACTING})
def post_shares(path: IdPath, header: ActingAccount, body: ShareBody):
    return actions.share(authz(), header.x_account_id, path.id, body.account_ids), 201


@api.get("/audiences/<id>/shares", tags=[SHARING], summary="Active recipients (owner only)",
         responses={200: R.ShareList, **R.ACTING})
def get_shares(path: IdPath, header: ActingAccount):
    return actions.list_shares(authz(), header.x_account_id, path.id)


@api.delete("/audiences/<id>/shares/<account_id>", tags=[SHARING], summary="Stop sharing with one recipient",
            responses={200: R.StopResult, **R.ACTING})
def delete_share(path: ShareTargetPath, header: ActingAccount):
    return actions.stop_sharing(authz(), header.x_account_id, path.id, path.account_id)


@api.delete("/audiences/<id>/shares", tags=[SHARING], summary="Stop sharing with every recipient",
            responses={200: R.StopResult, **R.ACTING})
def delete_shares(path: IdPath, header: ActingAccount):
    return actions.stop_sharing(authz(), header.x_account_id, path.id, None)


@api.get("/audiences/<id>/share-log", tags=[SHARING], summary="Share history, paged (owner only)",
         responses={200: R.ShareLog, **R.ACTING})
def get_share_log(path: IdPath, header: ActingAccount, query: Page):
    return actions.share_log(authz(), header.x_account_id, path.id, query.after, query.limit)


# -- ad groups -----------------------------------------------------------------------------

@api.put("/ad-groups/<id>", tags=[AD_GROUPS], summary="Upsert an ad group of the acting account",
         responses={200: R.AdGroupResult, **R.ACTING})
def put_ad_group(path: IdPath, header: ActingAccount, body: AdGroupBody):
    return actions.upsert_ad_group(authz(), header.x_account_id, path.id, body.name, body.include,
                                   body.exclude, body.status)


@api.get("/ad-groups/<id>", tags=[AD_GROUPS], summary="The ad group and its targeting",
         responses={200: R.AdGroupView, **R.ACTING})
def get_ad_group(path: IdPath, header: ActingAccount):
    return actions.get_ad_group(authz(), header.x_account_id, path.id)


# -- decisions -----------------------------------------------------------------------------

def _decide(check: AuthorizeBody) -> dict:
    req = Request(check.principal.account_id, check.action, check.resource.audience_id,
                  target_account_id=check.context.target_account_id,
                  ad_group_id=check.context.ad_group_id)
    return authz().check(req, explain=check.explain).answer()


@decide.post("/authorize", tags=[DECIDE], summary="One decision, with reasons and effects (not applied)",
          responses={200: R.AuthorizeAnswer, **R.AUTHORIZE})
def post_authorize(body: AuthorizeBody):
    return _decide(body)


@decide.post("/authorize/batch", tags=[DECIDE], summary="Many decisions, answered in order",
          responses={200: R.BatchAnswer, **R.AUTHORIZE})
def post_authorize_batch(body: BatchBody):
    return {"results": [_decide(check) for check in body.checks]}


@api.get("/events", tags=[FEEDS], summary="Applied effects and state changes, in order",
         responses={200: R.EventPage})
def get_events(query: Page):
    return actions.events(query.after, query.limit)


@api.get("/decisions", tags=[FEEDS], summary="The decision log, in order",
         responses={200: R.DecisionPage})
def get_decisions(query: Page):
    decision_log.writer.flush()  # this process's batched rows first, so a reader sees its own
    return actions.decisions(query.after, query.limit)


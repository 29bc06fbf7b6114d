"""The HTTP routes of SPEC §4: validate, call the action, answer JSON."""

from __future__ import annotations

import threading
import time

from flask import Response, current_app, g, request
from flask_openapi3 import APIBlueprint, Tag

from audience_authz import actions
from audience_authz.engine import context, decision_log
from audience_authz.engine.authorizer import Authorizer
from audience_authz.engine.facts import Request
from audience_authz.http import feed_watch
from audience_authz.http import responses as R
from audience_authz.http.schemas import (
    AccountBody,
    ActingAccount,
    AdGroupBody,
    AudienceCreateBody,
    AudienceListQuery,
    AudiencePatchBody,
    AuthorizeBody,
    BatchBody,
    BusinessCenterBody,
    DecisionIdPath,
    DecisionQuery,
    EventQuery,
    IdPage,
    IdPath,
    LookalikeBody,
    Page,
    ShareBody,
    ShareTargetPath,
    StreamHeaders,
    StreamQuery,
)
from audience_authz.store import budget
from audience_authz.store.models import database

api = APIBlueprint("api", __name__, url_prefix="/v1", abp_security=[{"bearer": []}],
                   abp_responses=R.COMMON)
# the decision endpoints: a blueprint of their own, whose faults are denies (errors.fail_closed)
decide = APIBlueprint("authorize", __name__, url_prefix="/v1", abp_security=[{"bearer": []}],
                      abp_responses=R.COMMON)
ENTITIES, AUDIENCES, SHARING, AD_GROUPS, DECIDE, FEEDS = (
    Tag(name=n) for n in ("entities", "audiences", "sharing", "ad groups", "authorize", "feeds"))


# set when this worker is asked to stop (http/server.py): long polls answer, streams end
STOPPING = threading.Event()
_HEARTBEAT_S = 5.0  # an SSE comment when nothing happened for this long (keeps proxies open, finds gone clients)


def authz() -> Authorizer:
    return current_app.extensions["authz"]


@api.before_request
def _caller_facts():
    """The X-Authz-Context header: the caller's facts, for every decision of this request
    (checked against the policy when a decision is made: engine/context.py)."""
    g.caller_facts = context.use(context.from_header(request.headers.get("X-Authz-Context")))


@api.teardown_request
def _forget_caller_facts(_exc):
    token = g.pop("caller_facts", None)
    if token is not None:
        context.reset(token)


# -- entities ------------------------------------------------------------------------------

@api.put("/business-centers/<id>", operation_id="upsertBusinessCenter", tags=[ENTITIES], summary="Upsert a Business Center",
         responses={200: R.BusinessCenterView})
def put_business_center(path: IdPath, body: BusinessCenterBody):
    return actions.upsert_business_center(authz(), path.id, body.name, body.allowlisting())


@api.get("/business-centers/<id>", operation_id="getBusinessCenter", tags=[ENTITIES],
         summary="A Business Center, to its own accounts",
         description="Who may read it is the policy's `view_business_center` (policy/policy.csv): the shipped "
                     "policy lets the accounts of this Business Center (X-Account-Id) read it and denies others "
                     "`not_in_business_center`. 404 for an unknown Business Center.",
         responses={200: R.BusinessCenterView, **R.ACTING})
def get_business_center(path: IdPath, header: ActingAccount):
    return actions.get_business_center(authz(), header.x_account_id, path.id)


@api.get("/accounts/<id>", operation_id="getAccount", tags=[ENTITIES], summary="An ad account and its Business Center",
         description="Who may read it is the policy's `view_account` (policy/policy.csv): the shipped policy "
                     "lets the account itself and the accounts of its Business Center (X-Account-Id) read it "
                     "and denies others `not_in_account_business_center`. 404 for an unknown account.",
         responses={200: R.AccountView, **R.ACTING})
def get_account(path: IdPath, header: ActingAccount):
    return actions.get_account(authz(), header.x_account_id, path.id)


@api.put("/accounts/<id>", operation_id="upsertAccount", tags=[ENTITIES], summary="Upsert an ad account",
         responses={200: R.AccountView, 404: R.ErrorBody})
def put_account(path: IdPath, body: AccountBody):
    return actions.upsert_account(authz(), path.id, body.name, body.business_center())


@api.post("/accounts/<id>/terms-acceptance", operation_id="acceptTerms", tags=[ENTITIES],
          summary="Record the account's acceptance of the Custom Audience Terms",
          responses={200: R.AccountView, **R.ACTING})
def post_terms(path: IdPath, header: ActingAccount):
    return actions.accept_terms(authz(), header.x_account_id, path.id)


@api.get("/accounts/<id>/audiences", operation_id="listAccountAudiences", tags=[AUDIENCES],
         summary="Owned and shared-with-me audiences, with relation and allowed actions (paged by id; filter by action)",
         responses={200: R.AudienceList, **R.ACTING})
def get_account_audiences(path: IdPath, header: ActingAccount, query: AudienceListQuery):
    return actions.list_audiences(authz(), header.x_account_id, path.id, query.after, query.limit, query.action)


# -- audiences -----------------------------------------------------------------------------

@api.post("/audiences", operation_id="createAudience", tags=[AUDIENCES], summary="Create a custom audience",
          responses={201: R.AudienceResult, 409: R.ErrorBody, 422: R.ErrorBody, **R.ACTING})
def post_audience(header: ActingAccount, body: AudienceCreateBody):
    result = actions.create_audience(authz(), header.x_account_id, body.id, body.name, body.source,
                                     body.member_count)
    return result, 201


@api.get("/audiences/<id>", operation_id="getAudience", tags=[AUDIENCES], summary="The audience as the acting account sees it",
         responses={200: R.AudienceView, **R.ACTING})
def get_audience(path: IdPath, header: ActingAccount):
    return actions.get_audience(authz(), header.x_account_id, path.id)


@api.patch("/audiences/<id>", operation_id="editAudience", tags=[AUDIENCES], summary="Edit: rename, add/remove/replace members",
           responses={200: R.AudienceResult, **R.ACTING})
def patch_audience(path: IdPath, header: ActingAccount, body: AudiencePatchBody):
    members = body.members.model_dump() if body.members else None
    return actions.edit_audience(authz(), header.x_account_id, path.id, body.name, members)


@api.delete("/audiences/<id>", operation_id="deleteAudience", tags=[AUDIENCES],
            summary="Delete (owner) or remove from the own list (recipient)",
            responses={200: R.DeleteResult, **R.ACTING})
def delete_audience(path: IdPath, header: ActingAccount):
    return actions.delete_audience(authz(), header.x_account_id, path.id)


@api.post("/audiences/<id>/lookalikes", operation_id="createLookalike", tags=[AUDIENCES],
          summary="Create a lookalike from a custom audience",
          responses={201: R.AudienceResult, 409: R.ErrorBody, 422: R.ErrorBody, **R.ACTING})
def post_lookalike(path: IdPath, header: ActingAccount, body: LookalikeBody):
    return actions.create_lookalike(authz(), header.x_account_id, path.id, body.id, body.name), 201


@api.post("/audiences/<id>/refresh", operation_id="refreshLookalike", tags=[AUDIENCES], summary="Refresh a lookalike",
          responses={200: R.AudienceResult, 409: R.ErrorBody, **R.ACTING})
def post_refresh(path: IdPath, header: ActingAccount):
    return actions.refresh_lookalike(authz(), header.x_account_id, path.id)


# -- sharing -------------------------------------------------------------------------------

@api.post("/audiences/<id>/shares", operation_id="shareAudience", tags=[SHARING],
          summary="Share with 1 to 100 accounts, all or nothing",
          responses={201: R.ShareResult, 409: R.ErrorBody, 422: R.ErrorBody, **R.ACTING})
def post_shares(path: IdPath, header: ActingAccount, body: ShareBody):
    return actions.share(authz(), header.x_account_id, path.id, body.account_ids), 201


@api.get("/audiences/<id>/shares", operation_id="listShares", tags=[SHARING],
         summary="Active recipients (owner only), paged by account id",
         responses={200: R.ShareList, **R.ACTING})
def get_shares(path: IdPath, header: ActingAccount, query: IdPage):
    return actions.list_shares(authz(), header.x_account_id, path.id, query.after, query.limit)


@api.delete("/audiences/<id>/shares/<account_id>", operation_id="stopSharing", tags=[SHARING],
            summary="Stop sharing with one recipient",
            responses={200: R.StopResult, **R.ACTING})
def delete_share(path: ShareTargetPath, header: ActingAccount):
    return actions.stop_sharing(authz(), header.x_account_id, path.id, path.account_id)


@api.delete("/audiences/<id>/shares", operation_id="stopSharingAll", tags=[SHARING], summary="Stop sharing with every recipient",
            responses={200: R.StopResult, **R.ACTING})
def delete_shares(path: IdPath, header: ActingAccount):
    return actions.stop_sharing(authz(), header.x_account_id, path.id, None)


@api.get("/audiences/<id>/share-log", operation_id="getShareLog", tags=[SHARING], summary="Share history, paged (owner only)",
         responses={200: R.ShareLog, **R.ACTING})
def get_share_log(path: IdPath, header: ActingAccount, query: Page):
    return actions.share_log(authz(), header.x_account_id, path.id, query.after, query.limit)


# -- ad groups -----------------------------------------------------------------------------

@api.put("/ad-groups/<id>", operation_id="upsertAdGroup", tags=[AD_GROUPS], summary="Upsert an ad group of the acting account",
         responses={200: R.AdGroupResult, 422: R.ErrorBody, **R.ACTING})
def put_ad_group(path: IdPath, header: ActingAccount, body: AdGroupBody):
    return actions.upsert_ad_group(authz(), header.x_account_id, path.id, body.name, body.include,
                                   body.exclude, body.status)


@api.get("/ad-groups/<id>", operation_id="getAdGroup", tags=[AD_GROUPS], summary="The ad group and its targeting",
         responses={200: R.AdGroupView, **R.ACTING})
def get_ad_group(path: IdPath, header: ActingAccount):
    return actions.get_ad_group(authz(), header.x_account_id, path.id)


# -- decisions -----------------------------------------------------------------------------

def _decide(check: AuthorizeBody) -> dict:
    req = Request(check.principal.account_id, check.action, check.resource.audience_id,
                  target_account_id=check.context.target_account_id,
                  ad_group_id=check.context.ad_group_id, context=check.context.facts)
    return authz().check(req, explain=check.explain, plan_effects=check.include_effects).answer()


def _cost_cap():
    """The work one decision request may cost (store/budget.py): 422 past it."""
    return budget.limited(current_app.config["SETTINGS"].max_request_cost)


@decide.post("/authorize", operation_id="authorize", tags=[DECIDE],
             summary="One decision, with reasons and effects (not applied)",
          responses={200: R.AuthorizeAnswer, **R.AUTHORIZE})
def post_authorize(body: AuthorizeBody):
    with _cost_cap():
        return _decide(body)


@decide.post("/authorize/batch", operation_id="authorizeBatch", tags=[DECIDE], summary="Many decisions, answered in order",
          responses={200: R.BatchAnswer, **R.AUTHORIZE})
def post_authorize_batch(body: BatchBody):
    with _cost_cap():
        return {"results": [_decide(check) for check in body.checks]}


@api.get("/events", operation_id="listEvents", tags=[FEEDS],
         summary="Applied effects and state changes, in order; filters; long poll with wait",
         responses={200: R.EventPage})
def get_events(query: EventQuery):
    filters = _event_filters(query)
    page = actions.events(query.after, query.limit, **filters)
    if page["events"] or not query.wait or STOPPING.is_set():
        return page
    # a long poll: on a feed thread (http/server.py), its place bounded, no connection held
    database.close()
    watcher = current_app.extensions["feed_watcher"]
    with current_app.extensions["subscribers"].hold("long_poll", g.get("token_key", "")):
        watcher.subscribe()
        try:
            after, until, sock = page["next_after"], time.monotonic() + query.wait, _client_socket()
            while True:
                events, after = watcher.page(after, query.limit, filters)
                if events or not feed_watch.deadline_wait(watcher, after, until, sock):
                    return {"events": [e.view for e in events], "next_after": after}
        finally:
            watcher.unsubscribe()


@api.get("/events/latest", operation_id="latestEvent", tags=[FEEDS],
         summary="The newest event's id: where a new consumer starts", responses={200: R.LatestEvent})
def get_latest_event():
    return {"id": actions.latest_event_id()}


@api.get("/events/stream", operation_id="streamEvents", tags=[FEEDS],
         summary="Server-Sent Events: each event as it is applied (SSE id = event id; Last-Event-ID resumes)",
         responses={200: {"description": "text/event-stream: `id: <event id>`, `event: <type>`, `data: <the"
                                         " event as in EventPage, JSON>`; a comment line every 5 s",
                          "content": {"text/event-stream": {"schema": {"type": "string"}}}}})
def get_event_stream(query: StreamQuery, header: StreamHeaders):
    filters = _event_filters(query)
    latest = actions.latest_event_id()
    after = int(header.last_event_id) if header.last_event_id is not None else query.after
    after = latest if after is None else after
    actions.events(after, 1, **filters)  # a cursor past the end is a 400 now, not a silent stream
    place = current_app.extensions["subscribers"].hold("stream", g.get("token_key", ""))
    place.__enter__()  # refused here (503/429) when no place is left; left when the stream ends
    body = _EventStream(current_app.extensions["feed_watcher"], after, filters, _client_socket(), place)
    response = Response(body, mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # a proxy must not hold events back
    return response


def _event_filters(query) -> dict:
    return {"account_id": query.account_id, "audience_id": query.audience_id, "types": tuple(query.type)}


def _client_socket():
    """The client's socket under gunicorn (to notice a subscriber that went away)."""
    return request.environ.get("gunicorn.socket")


class _EventStream:
    """The SSE body, written after the request's handler has returned (its connection
    released). It ends when the worker is asked to stop (the consumer then reconnects with
    Last-Event-ID, to this worker's successor or another) or within seconds of the client
    going away; its subscriber place is given back when the server closes it."""

    def __init__(self, watcher, after: int, filters: dict, sock, place):
        self.watcher, self.after, self.filters, self.sock, self.place = watcher, after, filters, sock, place
        self._closed = False

    def __iter__(self):
        self.watcher.subscribe()
        try:
            yield "retry: 1000\n\n"
            while not STOPPING.is_set():
                events, self.after = self.watcher.page(self.after, 500, self.filters)
                if events:
                    yield "".join(e.frame for e in events)
                    continue
                if feed_watch.client_gone(self.sock):
                    return
                if not feed_watch.deadline_wait(self.watcher, self.after, time.monotonic() + _HEARTBEAT_S,
                                                self.sock) and not STOPPING.is_set():
                    yield ": keep-alive\n\n"  # also finds a client gone where a proxy stands between
        finally:
            self.watcher.unsubscribe()

    def close(self):
        if not self._closed:
            self._closed = True
            self.place.__exit__(None, None, None)


@api.get("/decisions", operation_id="listDecisions", tags=[FEEDS], summary="The decision log, in order",
         responses={200: R.DecisionPage})
def get_decisions(query: DecisionQuery):
    decision_log.writer.flush()  # this process's batched rows first, so a reader sees its own
    return actions.decisions(query.after, query.limit, request_id=query.request_id)


@api.get("/decisions/<decision_id>", operation_id="getDecision", tags=[FEEDS], summary="One decision of the log",
         responses={200: R.DecisionView, 404: R.ErrorBody})
def get_decision(path: DecisionIdPath):
    decision_log.writer.flush()  # this process's batched rows first
    return actions.decision(path.decision_id)


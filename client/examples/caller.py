"""A calling service's use of the client, type-checked with ``mypy --strict`` by the tests
(tests/test_client_package.py) against the installed package alone.

Run it: ``python caller.py http://127.0.0.1:8080 <token> <owner> <recipient> <audience>``.
"""

from __future__ import annotations

import sys

from audience_authz_client import (
    AuthzClient,
    Check,
    Decision,
    Denied,
    DisconnectAudience,
    EndShare,
    EventSpan,
    RequestError,
    ShareResult,
)


def may_apply(authz: AuthzClient, account_id: str, audience_id: str, ad_group_id: str) -> bool:
    decision: Decision = authz.authorize(account_id, "apply", audience_id, ad_group_id=ad_group_id)
    if not decision.allowed and "not_owner" in decision.codes:
        print("only the owner may", decision.request_id)
    return decision.allowed


def share_once(authz: AuthzClient, owner: str, audience_id: str, recipient: str) -> list[str]:
    answer = authz.share(owner, audience_id, [recipient], request_id="caller-share-1")
    if isinstance(answer, Denied):  # a deny is an answer, with the policy's reasons
        return [r.code for r in answer.reasons]
    shared: ShareResult = answer
    span: EventSpan | None = shared.events  # where its events are in the feed
    if span is not None:
        print("events", span.first_id, "to", span.last_id)
    return list(shared.recipients)


def recipients(authz: AuthzClient, owner: str, audience_id: str) -> list[str] | None:
    """Every recipient, page by page; None when the policy refuses the list."""
    found: list[str] = []
    for page in authz.share_pages(owner, audience_id, limit=500):
        if isinstance(page, Denied):
            return None
        found += [share.account_id for share in page.shares]
    return found


def stop(authz: AuthzClient, owner: str, audience_id: str, recipient: str) -> int:
    answer = authz.stop_sharing(owner, audience_id, recipient)
    if isinstance(answer, Denied):
        return -1
    disconnected = 0
    for effect in answer.effects:
        if isinstance(effect, DisconnectAudience):
            disconnected += len(effect.before.include) - len(effect.after.include)
        elif isinstance(effect, EndShare):
            print("share ended", effect.account_id)
    return disconnected


def main(argv: list[str]) -> int:
    base_url, token, owner, recipient, audience_id = argv
    with AuthzClient(base_url, token, timeout=2.0, retries=2) as authz:
        try:
            checks = [Check(owner, "view", audience_id), Check(recipient, "share", audience_id,
                                                              target_account_id=owner)]
            print([d.decision for d in authz.authorize_many(checks)])
            print(share_once(authz, owner, audience_id, recipient))
            print(recipients(authz, owner, audience_id))
            print(may_apply(authz, recipient, audience_id, "ag_none"))
            print(stop(authz, owner, audience_id, recipient))
        except RequestError as misuse:  # 400, 401, 403 insufficient_scope: fix the caller
            print("misuse:", misuse.status, misuse.code, misuse.request_id)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

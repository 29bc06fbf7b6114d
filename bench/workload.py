"""Random authorization requests over a generated store, shaped like real traffic.

An audience is picked uniformly; the principal is its owner (40%), one of its recipients
(40%) or any account (20%), plus a few unknown ids; the action is one of the nine audience
actions, with a target account (share, stop_sharing) or an ad group (apply) as the action
needs. Requests are drawn with plain SQL on the store, independent of the service.
"""

from __future__ import annotations

import random
import sqlite3

from audience_authz.engine.facts import Request
from audience_authz.engine.policy import AUDIENCE_ACTIONS
from bench.build_store import Sizes, account_id, ad_group_id, audience_id


def draw(path, sizes: Sizes, n: int, seed: int = 7) -> list[Request]:
    rng = random.Random(seed)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [_one(conn, sizes, rng) for _ in range(n)]
    finally:
        conn.close()


def _recipients(conn, audience: str) -> list[str]:
    return [r for (r,) in conn.execute(
        "SELECT recipient_account_id FROM audience_share WHERE audience_id = ? AND status = 'active'",
        [audience])]


def _one(conn, sizes: Sizes, rng: random.Random) -> Request:
    j = rng.randrange(sizes.audiences)
    aud = audience_id(j)
    if rng.random() < 0.01:
        aud = f"aud_unknown_{j}"
    (owner,) = conn.execute("SELECT owner_account_id FROM audience WHERE id = ?",
                            [audience_id(j)]).fetchone()
    recipients = _recipients(conn, audience_id(j))
    roll = rng.random()
    if roll < 0.4 or not recipients and roll < 0.8:
        principal = owner
    elif roll < 0.8:
        principal = rng.choice(recipients)
    elif roll < 0.99:
        principal = account_id(rng.randrange(sizes.accounts))
    else:
        principal = f"acc_unknown_{j}"
    return _asked(conn, sizes, rng, principal, aud, recipients)


def _asked(conn, sizes: Sizes, rng: random.Random, principal: str, aud: str, recipients: list[str]) -> Request:
    """One of the nine audience actions by ``principal`` on ``aud``, with a target account or
    an ad group where the action takes one."""
    action = rng.choice(AUDIENCE_ACTIONS)
    target = ad_group = None
    if action == "share":
        if rng.random() < 0.7:  # usually an account of the principal's Business Center
            index = int(principal.rpartition("_")[2])
            target = account_id((index + sizes.business_centers * rng.randrange(1, 100)) % sizes.accounts)
        elif recipients and rng.random() < 0.5:
            target = rng.choice(recipients)
        else:
            target = account_id(rng.randrange(sizes.accounts))
    elif action == "stop_sharing":
        roll = rng.random()
        if recipients and roll < 0.6:
            target = rng.choice(recipients)
        elif roll < 0.8:
            target = account_id(rng.randrange(sizes.accounts))
        # else: stop sharing with everyone
    elif action == "apply":
        row = conn.execute("SELECT id FROM ad_group WHERE account_id = ? LIMIT 1", [principal]).fetchone()
        if row is not None and rng.random() < 0.8:
            ad_group = row[0]
        else:
            ad_group = ad_group_id(rng.randrange(sizes.ad_groups))
    return Request(principal, action, aud, target_account_id=target, ad_group_id=ad_group)


def draw_batches(path, sizes: Sizes, n: int, size: int, seed: int = 17) -> list[list[Request]]:
    """``n`` batches of ``size`` checks by one account each (a page of its audiences: the
    batch form of a PDP such as Cerbos takes one principal and many resources): the
    account of a random audience's owner or recipient, asking about the audiences it owns
    or received (a few others when it has fewer), one random action each."""
    rng = random.Random(seed)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    out = []
    try:
        while len(out) < n:
            j = rng.randrange(sizes.audiences)
            (owner,) = conn.execute("SELECT owner_account_id FROM audience WHERE id = ?",
                                    [audience_id(j)]).fetchone()
            recipients = _recipients(conn, audience_id(j))
            principal = rng.choice(recipients) if recipients and rng.random() < 0.5 else owner
            mine = [a for (a,) in conn.execute(
                "SELECT id FROM audience WHERE owner_account_id = ? UNION"
                " SELECT audience_id FROM audience_share WHERE recipient_account_id = ? AND status = 'active'",
                [principal, principal])]
            chosen = rng.sample(mine, min(size, len(mine)))
            while len(chosen) < size:
                other = audience_id(rng.randrange(sizes.audiences))
                if other not in chosen:
                    chosen.append(other)
            out.append([_asked(conn, sizes, rng, principal, aud, _recipients(conn, aud)) for aud in chosen])
    finally:
        conn.close()
    return out


def as_body(req: Request) -> dict:
    """The request as the JSON body of POST /v1/authorize."""
    body = {"principal": {"account_id": req.principal}, "action": req.action,
            "resource": {"audience_id": req.audience_id}}
    context = {}
    if req.target_account_id is not None:
        context["target_account_id"] = req.target_account_id
    if req.ad_group_id is not None:
        context["ad_group_id"] = req.ad_group_id
    if context:
        body["context"] = context
    return body

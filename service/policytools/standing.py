"""The current state against a candidate policy: which active shares it would no longer
allow, and what ending them would do to the recipients' ad groups.

The decision log replay (``diff.py``) says how past requests would be decided; this says
what the candidate means for what exists now. For every active share the candidate is
asked, on the facts the database holds now:

* ``keep_share``: is the share still in its sharing scope? The service asks this when an
  account or a Business Center changes, so a share the candidate refuses is ended at the
  next such change of its accounts (not when the candidate is loaded); its end is then
  the candidate's ``stop_sharing`` of it, whose planned effects name the ad groups that
  would lose the audience, be paused, or have their targeting broadened.
* ``share``: would the candidate let the owner make this share today (asked as if it did
  not exist yet)? A share it refuses stays until someone stops it, but could not be made
  again.

Nothing is written: no decision-log row, no metric.
"""

from __future__ import annotations

import dataclasses

from audience_authz.engine.authorizer import Authorizer
from audience_authz.engine.facts import Request, gather
from audience_authz.engine.policy import Policy
from audience_authz.store.models import Audience, Share


def active_shares() -> list[tuple[str, str, str]]:
    """(audience, recipient, owner) of every active share, in a stable order."""
    return list(Share.select(Share.audience, Share.recipient_account, Audience.owner_account)
                .join(Audience, on=(Share.audience == Audience.id))
                .where(Share.status == "active")
                .order_by(Share.audience, Share.recipient_account).tuples())


def _answer(decision) -> dict:
    return {"decision": decision.decision, "reason": decision.reason}


def _share_now(policy: Policy, owner: str, audience: str, recipient: str):
    """The candidate's ``share`` of an existing share, as if it were not made yet."""
    gathered = gather(policy, Request(owner, "share", audience, target_account_id=recipient))
    facts = gathered.facts
    if "target_has_share" in policy.facts_schema:
        facts = dataclasses.replace(facts, target_has_share=False)
    return policy.decide(gathered.relation, "share", facts)


def _ad_groups(effects: list[dict]) -> list[dict]:
    """What the planned effects of ending a share do to each ad group: ``pause`` (paused),
    ``broaden`` (its include list empties, so its targeting widens) or ``disconnect``."""
    paused = {e["ad_group_id"] for e in effects if e["type"] == "pause_ad_group"}
    groups = []
    for e in effects:
        if e["type"] != "disconnect_audience":
            continue
        emptied = bool(e["before"]["include"]) and not e["after"]["include"]
        outcome = "pause" if e["ad_group_id"] in paused else "broaden" if emptied else "disconnect"
        groups.append({"ad_group_id": e["ad_group_id"], "account_id": e["account_id"], "outcome": outcome})
    return groups


def check(candidate: Policy) -> dict:
    """Every active share the candidate would not keep or not allow now, with the ad
    groups ending it would touch."""
    authz = Authorizer(candidate)
    shares = active_shares()
    listed = []
    for audience, recipient, owner in shares:
        keep = authz.check(Request(owner, "keep_share", audience, target_account_id=recipient),
                           plan_effects=False, log=False)
        now = _share_now(candidate, owner, audience, recipient)
        if keep.allowed and now.allowed:
            continue
        entry = {"audience_id": audience, "owner_account_id": owner, "recipient_account_id": recipient,
                 "keep_share": _answer(keep.decision), "share": _answer(now),
                 "would_end": not keep.allowed, "ad_groups": [], "stop_sharing_refused": None}
        if not keep.allowed:
            stop = authz.check(Request(owner, "stop_sharing", audience, target_account_id=recipient), log=False)
            if stop.allowed:
                entry["ad_groups"] = _ad_groups(stop.effects)
            else:  # the service fails closed: the account change that ends it would be refused
                entry["stop_sharing_refused"] = stop.decision.reason
        listed.append(entry)
    touched = [g for entry in listed for g in entry["ad_groups"]]
    return {
        "candidate_version": candidate.version,
        "active_shares": len(shares),
        "not_kept": sum(e["would_end"] for e in listed),
        "not_allowed_now": sum(e["share"]["decision"] == "deny" for e in listed),
        "ad_groups": {outcome: sorted({g["ad_group_id"] for g in touched if g["outcome"] == outcome})
                      for outcome in ("pause", "broaden", "disconnect")},
        "shares": listed,
    }


def text(report: dict, candidate_dir) -> str:
    groups = report["ad_groups"]
    out = [f"Checked {report['active_shares']} active share(s) against {candidate_dir}"
           f" (policy {report['candidate_version']}).",
           f"{report['not_kept']} would not be kept (keep_share: ended at the next change of their accounts' "
           f"Business Centers); {report['not_allowed_now']} could not be made now (share).",
           f"Ending them would pause {len(groups['pause'])}, broaden {len(groups['broaden'])} and disconnect "
           f"{len(groups['disconnect'])} ad group(s)."]
    for e in report["shares"]:
        out.append(f"\n  {e['audience_id']} -> {e['recipient_account_id']} (owner {e['owner_account_id']}):"
                   f" keep_share {e['keep_share']['decision']} ({e['keep_share']['reason']}),"
                   f" share {e['share']['decision']} ({e['share']['reason']})")
        for g in e["ad_groups"]:
            out.append(f"      ad group {g['ad_group_id']} of {g['account_id']}: {g['outcome']}")
        if e["stop_sharing_refused"]:
            out.append(f"      the candidate refuses to stop it ({e['stop_sharing_refused']}): "
                       "the account change would be refused")
    return "\n".join(out) + "\n"

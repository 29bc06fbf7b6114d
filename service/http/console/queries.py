"""The console's reads of the store: pages of the decision log and the events feed, and
the pickers of the Try form. Every query is bounded so that a page costs the same on a
store of a million entities as on the demo's:

* pages are keyset pages, newest first (``id < before ORDER BY id DESC LIMIT n``), never
  OFFSET;
* the decision log filtered by account reads the index ``decision_log_principal``
  (principal, id); the other filters (audience, action, decision, reason, time) look
  through at most ``SCAN`` rows of the primary key per page, and the page says how far it
  looked, with a link to look further back;
* pickers read at most ``PICK`` rows of a primary-key or foreign-key index.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field

import peewee as pw

from audience_authz.store.models import Account, AdGroup, Audience, DecisionLog, Event, Share

PAGE = 50
SCAN = 20_000
PICK = 20


@dataclass
class Filters:
    account: str = ""
    audience: str = ""
    action: str = ""
    decision: str = ""
    reason: str = ""
    since: datetime.datetime | None = None
    until: datetime.datetime | None = None

    @property
    def any(self) -> bool:
        return any((self.account, self.audience, self.action, self.decision, self.reason, self.since,
                    self.until))


@dataclass
class DecisionPage:
    rows: list[dict] = field(default_factory=list)
    next_before: int | None = None  # the cursor of the next (older) page, None at the end
    looked_to: int | None = None  # the oldest id looked at when the scan window ran out


def _like(text: str) -> str:
    """A LIKE pattern for ``text`` anywhere; ``_`` and ``%`` stay wildcards (ids may hold
    ``_``), so the rows are checked exactly after."""
    return f"%{text}%"


def decisions(filters: Filters, before: int | None, allow_lines: list[int] | None = None,
              version: str = "") -> DecisionPage:
    """One page of the decision log, newest first. ``allow_lines``: the lines of the
    serving policy (``version``) whose rule id ``filters.reason`` names, for allow rows."""
    query = (DecisionLog.select(DecisionLog.id, DecisionLog.decision_id, DecisionLog.at, DecisionLog.principal,
                                DecisionLog.action, DecisionLog.resource, DecisionLog.decision, DecisionLog.reasons,
                                DecisionLog.policy_version, DecisionLog.relation, DecisionLog.rule_line)
             .order_by(DecisionLog.id.desc()))
    if before is not None:
        query = query.where(DecisionLog.id < before)
    window_floor = None
    if filters.account:
        query = query.where(DecisionLog.principal == filters.account)  # decision_log_principal
    elif filters.any:
        top = before if before is not None else (DecisionLog.select(pw.fn.MAX(DecisionLog.id)).scalar() or 0) + 1
        window_floor = max(top - SCAN, 0)
        query = query.where(DecisionLog.id >= window_floor)
    if filters.action:
        query = query.where(DecisionLog.action == filters.action)
    if filters.decision:
        query = query.where(DecisionLog.decision == filters.decision)
    if filters.audience:
        query = query.where(DecisionLog.resource ** _like(f'"audience_id":"{filters.audience}"'))
    if filters.reason:
        deny = DecisionLog.reasons ** _like(f'"code":"{filters.reason}"')
        if allow_lines:
            query = query.where(deny | ((DecisionLog.decision == "allow") & (DecisionLog.policy_version == version)
                                        & DecisionLog.rule_line.in_(allow_lines)))
        else:
            query = query.where(deny)
    if filters.since:
        query = query.where(DecisionLog.at >= filters.since)
    if filters.until:
        query = query.where(DecisionLog.at <= filters.until)
    page = DecisionPage()
    fetched = list(query.limit(PAGE + 1).dicts())
    for row in fetched[:PAGE]:
        row["resource"] = json.loads(row["resource"])
        row["reasons"] = json.loads(row["reasons"])
        if filters.audience and row["resource"].get("audience_id") != filters.audience:
            continue
        if (filters.reason and row["decision"] == "deny"
                and filters.reason not in (r.get("code") for r in row["reasons"])):
            continue
        page.rows.append(row)
    if len(fetched) > PAGE:
        page.next_before = fetched[PAGE - 1]["id"]
    elif window_floor:  # the window ran out before the page filled: older rows may match
        page.next_before = page.looked_to = window_floor
    return page


def decision(key: int) -> DecisionLog | None:
    return DecisionLog.get_or_none(DecisionLog.id == key)


def decisions_by_id(decision_ids: set[str]) -> dict[str, DecisionLog]:
    """The decisions that events name (the unique index on decision_id)."""
    if not decision_ids:
        return {}
    rows = (DecisionLog.select(DecisionLog.id, DecisionLog.decision_id, DecisionLog.principal, DecisionLog.action,
                               DecisionLog.reasons, DecisionLog.decision, DecisionLog.rule_line)
            .where(DecisionLog.decision_id.in_(list(decision_ids))))
    return {row.decision_id: row for row in rows}


def events(before: int | None, audience: str = "") -> tuple[list[Event], int | None]:
    """One page of the events feed, newest first, optionally of one audience (its index)."""
    query = Event.select().order_by(Event.id.desc())
    if before is not None:
        query = query.where(Event.id < before)
    if audience:
        query = query.where(Event.audience_id == audience)
    rows = list(query.limit(PAGE + 1))
    return rows[:PAGE], (rows[PAGE - 1].id if len(rows) > PAGE else None)


# -- pickers of the Try form --------------------------------------------------------------

def _from(model, column, prefix: str, query=None) -> list[tuple[str, str]]:
    """Up to PICK (id, label) rows whose id starts with ``prefix``, read in id order from
    the index (``id >= prefix``), so no LIKE scan."""
    query = query if query is not None else model.select()
    rows = query.where(column >= prefix).order_by(column).limit(PICK)
    return [(row.id, row.name) for row in rows if row.id.startswith(prefix)]


def pick_accounts(prefix: str) -> list[tuple[str, str]]:
    return _from(Account, Account.id, prefix, Account.select(Account.id, Account.name))


def pick_audiences(account: str, prefix: str) -> list[tuple[str, str]]:
    """The account's own audiences and those shared with it; any audience when no account."""
    if not account:
        return _from(Audience, Audience.id, prefix, Audience.select(Audience.id, Audience.name))
    owned = _from(Audience, Audience.id, prefix, Audience.select(Audience.id, Audience.name)
                  .where(Audience.owner_account == account))
    shared = (Share.select(Share.audience).where((Share.recipient_account == account) & (Share.status == "active")
                                                 & (Share.audience >= prefix))
              .order_by(Share.audience).limit(PICK))
    return [(i, f"{n} (owned)") for i, n in owned] + [
        (s.audience_id, "shared with it") for s in shared if s.audience_id.startswith(prefix)]


def pick_ad_groups(account: str, prefix: str) -> list[tuple[str, str]]:
    query = AdGroup.select(AdGroup.id, AdGroup.name)
    if account:
        query = query.where(AdGroup.account == account)
    return _from(AdGroup, AdGroup.id, prefix, query)

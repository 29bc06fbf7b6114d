"""Bulk import: JSON Lines of entities and actions, each applied through the same actions
(and so the same policy) as the HTTP API. A share in a file is decided by the policy like
any other: a refused line changes nothing and is reported with its reasons.

One JSON object per line, ``kind`` first; the other fields are those of the API's bodies,
with ``account_id`` naming the acting account (the ``X-Account-Id`` of the API)::

    {"kind": "business_center", "id": "bc_1", "name": "BC", "cross_bc_allowlisted": false}
    {"kind": "account", "id": "acc_1", "name": "Owner", "business_center_id": "bc_1"}
    {"kind": "terms_acceptance", "account_id": "acc_1"}
    {"kind": "audience", "account_id": "acc_1", "id": "aud_1", "name": "A", "source": "customer_file"}
    {"kind": "lookalike", "account_id": "acc_1", "seed_audience_id": "aud_1", "id": "lal_1", "name": "L"}
    {"kind": "share", "account_id": "acc_1", "audience_id": "aud_1", "account_ids": ["acc_2"]}
    {"kind": "ad_group", "account_id": "acc_2", "id": "ag_1", "name": "G", "include": ["aud_1"], "exclude": []}

Blank lines and lines starting with ``#`` are skipped.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import Field, TypeAdapter, ValidationError

from audience_authz import actions
from audience_authz.engine.authorizer import Authorizer
from audience_authz.exceptions import ApiError, Denied
from audience_authz.http.schemas import (
    AccountBody,
    AdGroupBody,
    AudienceCreateBody,
    BusinessCenterBody,
    Id,
    LookalikeBody,
    ShareBody,
    Strict,
)


class BusinessCenterLine(BusinessCenterBody):
    kind: Literal["business_center"]
    id: Id


class AccountLine(AccountBody):
    kind: Literal["account"]
    id: Id


class TermsLine(Strict):
    kind: Literal["terms_acceptance"]
    account_id: Id


class AudienceLine(AudienceCreateBody):
    kind: Literal["audience"]
    account_id: Id


class LookalikeLine(LookalikeBody):
    kind: Literal["lookalike"]
    account_id: Id
    seed_audience_id: Id


class ShareLine(ShareBody):
    kind: Literal["share"]
    account_id: Id
    audience_id: Id


class AdGroupLine(AdGroupBody):
    kind: Literal["ad_group"]
    account_id: Id
    id: Id


Line = Annotated[BusinessCenterLine | AccountLine | TermsLine | AudienceLine | LookalikeLine | ShareLine | AdGroupLine,
                 Field(discriminator="kind")]
_LINE = TypeAdapter(Line)
KINDS = ("business_center", "account", "terms_acceptance", "audience", "lookalike", "share", "ad_group")


def apply(authz: Authorizer, line) -> dict:
    """Apply one validated line through its action (raises Denied or ApiError like the API)."""
    if isinstance(line, BusinessCenterLine):
        return actions.upsert_business_center(authz, line.id, line.name, line.allowlisting())
    if isinstance(line, AccountLine):
        return actions.upsert_account(authz, line.id, line.name, line.business_center())
    if isinstance(line, TermsLine):
        return actions.accept_terms(authz, line.account_id, line.account_id)
    if isinstance(line, AudienceLine):
        return actions.create_audience(authz, line.account_id, line.id, line.name, line.source,
                                       line.member_count)
    if isinstance(line, LookalikeLine):
        return actions.create_lookalike(authz, line.account_id, line.seed_audience_id, line.id, line.name)
    if isinstance(line, ShareLine):
        return actions.share(authz, line.account_id, line.audience_id, line.account_ids)
    return actions.upsert_ad_group(authz, line.account_id, line.id, line.name, line.include, line.exclude,
                                   line.status)


@dataclass
class Summary:
    applied: Counter = field(default_factory=Counter)  # kind -> lines applied
    denied: Counter = field(default_factory=Counter)  # reason code -> refused lines
    denied_lines: int = 0
    existed: int = 0  # audiences and lookalikes whose id was already there
    problems: list[tuple[int, str]] = field(default_factory=list)  # (line number, what), not applied

    @property
    def ok(self) -> bool:
        return not self.problems

    def line(self) -> str:
        parts = [f"{self.applied[k]} {k}" for k in KINDS if self.applied[k]]
        text = f"applied {sum(self.applied.values())} line(s)" + (f" ({', '.join(parts)})" if parts else "")
        if self.existed:
            text += f"; {self.existed} already present"
        if self.denied_lines:
            text += f"; {self.denied_lines} denied by the policy (" + ", ".join(
                f"{code} {n}" for code, n in self.denied.most_common()) + ")"
        others = len(self.problems) - self.denied_lines
        if others:
            text += f"; {others} invalid or failed"
        return text


def import_lines(authz: Authorizer, lines: Iterable[str], on_line=None) -> Summary:
    """Validate and apply each line in order; ``on_line()`` after each (for a progress bar)."""
    summary = Summary()
    for number, text in enumerate(lines, start=1):
        _import_one(authz, number, text.strip(), summary)
        if on_line:
            on_line()
    return summary


def _import_one(authz: Authorizer, number: int, text: str, summary: Summary) -> None:
    if not text or text.startswith("#"):
        return
    try:
        line = _LINE.validate_json(text)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "line"
        summary.problems.append((number, f"invalid: {where}: {first['msg']}"))
        return
    try:
        apply(authz, line)
    except Denied as denied:
        reasons = denied.reasons
        summary.denied_lines += 1
        for code in {r["code"] for r in reasons}:
            summary.denied[code] += 1
        summary.problems.append((number, f"denied: {json.dumps(reasons, separators=(',', ':'))}"))
        return
    except ApiError as exc:
        if exc.status == 409:
            summary.existed += 1
            return
        summary.problems.append((number, f"failed: {exc.code}: {exc.message}"))
        return
    summary.applied[line.kind] += 1

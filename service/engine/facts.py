"""Gathering the facts of one decision from the database.

The hot path: every fact one decision needs comes from a single fixed SQL statement of
primary-key and indexed lookups (SPEC: "as few indexed queries as possible"); the ORM
serves everything else. No rule is decided here: this module only says what is true.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from audience_authz.engine import context
from audience_authz.engine.policy import ACCOUNT_ACTIONS
from audience_authz.store.models import Account, AdGroup, database

# One row: the principal, the audience (with its seed and its owner's Business Center),
# the relation, and, when the request names them, the target account and the ad group.
# A part the request does not name is a NULL column instead of a lookup of a key that
# cannot exist, so the statement has one fixed form per shape of request (at most eight).
_FACTS_SQL = """
SELECT
  pa.id, pa.business_center_id, pa.terms_accepted_at,
  a.id, a.owner_account_id, a.type, a.source, a.status, seed.status, seed.source,
  obc.cross_bc_allowlisted,
  (SELECT 1 FROM audience_share s
    WHERE s.audience_id = {p} AND s.recipient_account_id = {p} AND s.status = 'active'),
  {target},
  {ad_group},
  {attached}
FROM (SELECT 1 AS one) AS one
LEFT JOIN account pa {account_index} ON pa.id = {p}
LEFT JOIN audience a {audience_index} ON a.id = {p}
LEFT JOIN audience seed {audience_index} ON seed.id = a.seed_audience_id
LEFT JOIN account oa {account_index} ON oa.id = a.owner_account_id
LEFT JOIN business_center obc ON obc.id = oa.business_center_id
{target_join}
{ad_group_join}
"""
# The covering indexes of models.py answer these lookups from one B-tree. SQLite's planner
# prefers the primary key's own index unless ANALYZE has run, so it is named for SQLite;
# PostgreSQL's planner (kept informed by autovacuum) chooses by itself.
_SQLITE_HINTS = {"account_index": "INDEXED BY account_facts", "audience_index": "INDEXED BY audience_facts"}
_TARGET_SQL = """ta.id, ta.business_center_id,
  (SELECT 1 FROM audience_share s
    WHERE s.audience_id = {p} AND s.recipient_account_id = {p} AND s.status = 'active')"""
_ATTACHED_SQL = """(SELECT COUNT(*) FROM ad_group_audience aga
    JOIN ad_group ag ON ag.id = aga.ad_group_id
    WHERE aga.audience_id = {p} AND ag.account_id = {p})"""

_statements: dict[tuple, str] = {}


@dataclass(frozen=True)
class Request:
    """What is asked: may ``principal`` do ``action`` on ``audience_id``?"""

    principal: str
    action: str
    audience_id: str
    target_account_id: str | None = None
    ad_group_id: str | None = None
    account_id: str | None = None  # the account an account-scoped action is about
    business_center_id: str | None = None  # the Business Center view_business_center is about
    # the facts the caller supplied (context.supplied checks them); None: this request's
    # X-Authz-Context header, if any (context.current())
    context: dict | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Gathered:
    relation: str
    facts: object
    owner_account_id: str | None


def _statement(with_target: bool, with_ad_group: bool, with_attached: bool) -> str:
    param = database.obj.param
    key = (param, with_target, with_ad_group, with_attached)
    sql = _statements.get(key)
    if sql is None:
        hints = _SQLITE_HINTS if param == "?" else {"account_index": "", "audience_index": ""}
        sql = _statements[key] = _FACTS_SQL.format(
            p=param, **hints,
            target=_TARGET_SQL.format(p=param) if with_target else "NULL, NULL, NULL",
            ad_group="g.id, g.account_id" if with_ad_group else "NULL, NULL",
            attached=_ATTACHED_SQL.format(p=param) if with_attached else "0",
            target_join=f"LEFT JOIN account ta {hints['account_index']} ON ta.id = {param}" if with_target else "",
            ad_group_join=f"LEFT JOIN ad_group g ON g.id = {param}" if with_ad_group else "")
    return sql


def gather(policy, req: Request, ad_group_override: tuple[str, str] | None = None,
           supplied=context.EMPTY) -> Gathered:
    """The relation and facts for ``req``; ``supplied`` are the caller's (checked) facts.

    ``ad_group_override`` = (ad_group_id, account_id) describes an ad group being created
    by the same action, which the database does not hold yet.
    """
    if req.action in ACCOUNT_ACTIONS:
        return _gather_account(policy, req, supplied)
    target, ad_group = req.target_account_id, req.ad_group_id
    with_attached = req.action == "delete"
    # parameters in the order their placeholders stand in the statement
    params = [req.audience_id, req.principal]
    if target is not None:
        params += [req.audience_id, target]
    if with_attached:
        params += [req.audience_id, req.principal]
    params += [req.principal, req.audience_id]
    if target is not None:
        params.append(target)
    if ad_group is not None:
        params.append(ad_group)
    sql = _statement(target is not None, ad_group is not None, with_attached)
    row = database.execute_sql(sql, params).fetchone()
    return _from_row(policy, req.principal, target is not None, row, ad_group_override, supplied,
                     ad_group_specified=ad_group is not None or req.action != "apply")


def _from_row(policy, principal: str, target_specified: bool, row,
              ad_group_override: tuple[str, str] | None = None, supplied=context.EMPTY,
              ad_group_specified: bool = True) -> Gathered:
    """The relation and facts of one row of a facts statement."""
    (p_id, p_bc, p_terms, a_id, a_owner, a_type, a_source, a_status, seed_status, seed_source, allowlisted,
     p_share, t_id, t_bc, t_share, g_id, g_account, attached) = row
    if ad_group_override is not None and g_id is None:
        g_id, g_account = ad_group_override
    if a_id is None or p_id is None:
        relation = "none"
    elif a_owner == principal:
        relation = "owner"
    elif p_share:
        relation = "recipient"
    else:
        relation = "none"
    facts = policy.facts(
        **supplied,  # names context.supplied checked are context facts, never gathered ones
        principal_known=p_id is not None,
        principal_in_bc=p_bc is not None,
        principal_terms_accepted=p_terms is not None,
        audience_known=a_id is not None,
        audience_type=a_type or "",
        audience_source=a_source or "",
        audience_status=a_status or "",
        seed_status=seed_status or "",
        seed_source=seed_source or "",
        owner_bc_allowlisted=bool(allowlisted),
        target_specified=target_specified,
        target_known=t_id is not None,
        target_in_bc=t_bc is not None,
        target_is_self=t_id is not None and t_id == p_id,
        same_bc=t_bc is not None and t_bc == p_bc,
        target_has_share=bool(t_share),
        ad_group_specified=ad_group_specified,
        ad_group_known=g_id is not None,
        ad_group_owned=g_id is not None and g_account == principal,
        attached_ad_groups=int(attached or 0),
    )
    return Gathered(relation, facts, a_owner)


# The facts of a page of an account's list (its own active audiences and those shared
# with it, by id after a cursor), as ``gather`` would give them for a delete, in one statement.
_LISTED_SQL = """
SELECT
  pa.id, pa.business_center_id, pa.terms_accepted_at,
  a.id, a.owner_account_id, a.type, a.source, a.status, seed.status, seed.source,
  obc.cross_bc_allowlisted,
  (SELECT 1 FROM audience_share s
    WHERE s.audience_id = a.id AND s.recipient_account_id = {p} AND s.status = 'active'),
  NULL, NULL, NULL, NULL, NULL,
  (SELECT COUNT(*) FROM ad_group_audience aga
    JOIN ad_group ag ON ag.id = aga.ad_group_id
    WHERE aga.audience_id = a.id AND ag.account_id = {p})
FROM (SELECT id FROM audience WHERE owner_account_id = {p} AND status = 'active' AND id > {p}
      UNION SELECT audience_id FROM audience_share
        WHERE recipient_account_id = {p} AND status = 'active' AND audience_id > {p})
  AS listed
JOIN audience a ON a.id = listed.id
LEFT JOIN account pa ON pa.id = {p}
LEFT JOIN audience seed ON seed.id = a.seed_audience_id
LEFT JOIN account oa ON oa.id = a.owner_account_id
LEFT JOIN business_center obc ON obc.id = oa.business_center_id
ORDER BY a.id
{limit}"""


def gather_listed(policy, account_id: str, after: str | None = None,
                  limit: int | None = None) -> dict[str, Gathered]:
    """audience id -> its relation and facts, for the audiences of ``account_id``'s list
    with an id greater than ``after`` (all of them without it), in id order, at most ``limit``
    (with the facts the caller of this request supplied)."""
    supplied = context.supplied(policy, context.current())
    p = database.obj.param
    sql = _LISTED_SQL.format(p=p, limit=f"LIMIT {p}" if limit is not None else "")
    after = after or ""  # every id has at least one character
    params = [account_id, account_id, account_id, after, account_id, after, account_id]
    rows = database.execute_sql(sql, params + ([limit] if limit is not None else []))
    return {row[3]: _from_row(policy, account_id, False, row, None, supplied) for row in rows}


def _gather_account(policy, req: Request, supplied=context.EMPTY) -> Gathered:
    """Facts of an action on the acting account's own things (terms, lists, ad groups)."""
    principal_known = Account.select().where(Account.id == req.principal).exists()
    owner = None
    if req.action in ("view_ad_group", "edit_ad_group", "resume_ad_group"):
        owner = (AdGroup.select(AdGroup.account).where(AdGroup.id == req.ad_group_id)
                 .scalar())
    return _account_gathered(policy, req, principal_known, owner, supplied)


def _account_gathered(policy, req: Request, principal_known: bool, owner: str | None,
                      supplied=context.EMPTY) -> Gathered:
    """The relation and facts of an account action, given what the database said."""
    if req.action in ("view_ad_group", "edit_ad_group", "resume_ad_group"):
        relation = "new" if owner is None else ("self" if owner == req.principal else "other")
        facts = policy.facts(**supplied, principal_known=principal_known, ad_group_known=owner is not None,
                             ad_group_owned=owner == req.principal)
    elif req.action in ("view_account", "view_business_center"):
        return _gather_membership(policy, req, principal_known, supplied)
    else:
        account = req.account_id if req.account_id is not None else req.principal
        relation = "self" if account == req.principal else "other"
        facts = policy.facts(**supplied, principal_known=principal_known)
    return Gathered(relation, facts, None)


def _gather_membership(policy, req: Request, principal_known: bool, supplied=context.EMPTY) -> Gathered:
    """Facts of reading an account or a Business Center, from the Business Centers of the
    accounts involved."""
    def bc_of(account_id):
        return Account.select(Account.business_center).where(Account.id == account_id).scalar()

    theirs = bc_of(req.account_id) if req.action == "view_account" else None
    return _membership_gathered(policy, req, principal_known, bc_of(req.principal), theirs, supplied)


def _membership_gathered(policy, req: Request, principal_known: bool, mine: str | None,
                         theirs: str | None, supplied=context.EMPTY) -> Gathered:
    """Reading an account (relation self or other; ``same_bc``: both accounts in one Business
    Center) or a Business Center (relation self: the acting account's own)."""
    if req.action == "view_account":
        relation = "self" if req.account_id == req.principal else "other"
        facts = policy.facts(**supplied, principal_known=principal_known, principal_in_bc=mine is not None,
                             target_specified=True, target_known=True, target_in_bc=theirs is not None,
                             same_bc=mine is not None and mine == theirs)
    else:
        relation = "self" if mine is not None and mine == req.business_center_id else "other"
        facts = policy.facts(**supplied, principal_known=principal_known, principal_in_bc=mine is not None)
    return Gathered(relation, facts, None)


def samples(policy, action: str) -> list[Gathered]:
    """What the gatherer gives for ``action`` on made-up rows, one per relation and shape of
    request (target or not, ad group or not, attached ad groups or not), with no database:
    a reload decides each before it accepts a policy, so that a policy that cannot decide
    what the gatherer hands it is refused instead of answering 500. The caller's facts
    (facts.yaml ``source: context``) keep their declared default, a required one (which has
    none) the empty value of its type (False, 0, ""): a request that lacks it is a 400
    before any decision, so what matters here is only that the policy decides on it."""
    if action in ("view_account", "view_business_center"):
        found = []
        for known in (True, False):
            for account in ("p", "o"):
                for mine, theirs in ((None, None), ("bc", "bc"), ("bc", "other"), (None, "bc")):
                    req = Request("p", action, "", account_id=account, business_center_id="bc")
                    found.append(_membership_gathered(policy, req, known, mine, theirs))
        return found
    if action in ACCOUNT_ACTIONS:
        found = []
        for known in (True, False):
            for owner, account in ((None, "p"), ("p", "p"), ("o", "o")):
                req = Request("p", action, "", ad_group_id="g", account_id=account)
                found.append(_account_gathered(policy, req, known, owner))
        return found
    rows = []
    # a custom audience, and a lookalike of an active seed (with its seed's source)
    kinds = (("custom", "customer_file", None, None), ("lookalike", "", "active", "customer_file"))
    for known in (True, False):
        principal = ("p", "bc", "2024-01-01") if known else (None, None, None)
        for owner, share in (("p", None), ("o", 1), ("o", None)):
            for a_type, a_source, seed_status, seed_source in kinds:
                audience = ("a", owner, a_type, a_source, "active", seed_status, seed_source, 1, share)
                for target in ((None, None, None), ("t", "bc", None), ("p", "bc", 1)):
                    for ad_group in ((None, None), ("g", "p")):
                        for attached in (0, 2):
                            rows.append((target[0] is not None, ad_group[0] is not None or action != "apply",
                                         (*principal, *audience, *target, *ad_group, attached)))
    return [_from_row(policy, "p", target, row, ad_group_specified=ad_group) for target, ad_group, row in rows]

"""What an action needs to be carried out at all, whatever the policy allows.

The policy decides who may do what (policy/). Some requests, though, name something an
action cannot work on: a refresh of an audience with no seed, a share that exists, an
account or audience that does not exist. The shipped policy denies each of them first
(``not_lookalike``, ``already_shared``, ``unknown_target_account``, ...); a more permissive
candidate could allow one, and the action would then fail half-way. These checks run after
an allow and answer ``CannotCarryOut`` (409 or 422, with a code of its own) instead of a
500: the fail-safe of a permissive policy, not a second copy of its rules. What can be carried
out but should not (a lookalike of a lookalike, a refresh whose seed is deleted, a share with
oneself) is a rule, and stays in policy.csv alone.
"""

from __future__ import annotations

from audience_authz.exceptions import CannotCarryOut
from audience_authz.store.models import Account, Audience, Share


def acting_account_exists(principal: str, what: str) -> None:
    """``what`` (an audience, an ad group) needs an owner account the store knows."""
    if not Account.select().where(Account.id == principal).exists():
        raise CannotCarryOut(422, "unknown_acting_account",
                             f"the acting account {principal!r} is not known, and {what} needs an owner account")


def refreshable(audience: Audience) -> Audience:
    """The seed a lookalike is refreshed from."""
    if audience.type != "lookalike":
        raise CannotCarryOut(409, "not_a_lookalike",
                             f"audience {audience.id!r} is a {audience.type} audience, not a lookalike:"
                             " it has no seed to refresh from")
    seed = Audience.get_or_none(Audience.id == audience.seed_audience_id)
    if seed is None:
        raise CannotCarryOut(409, "seed_missing", f"lookalike {audience.id!r} has no seed audience to refresh from")
    return seed


def shareable(audience_id: str, account_ids: list[str]) -> None:
    """New shares of ``audience_id`` with ``account_ids``: each account exists and has none yet."""
    known = {a.id for a in Account.select(Account.id).where(Account.id.in_(account_ids))}
    unknown = [a for a in account_ids if a not in known]
    if unknown:
        raise CannotCarryOut(422, "unknown_target_account", f"no account with id {unknown[0]!r} to share with")
    active = sorted(s.recipient_account_id for s in Share.select(Share.recipient_account).where(
        (Share.audience == audience_id) & Share.recipient_account.in_(account_ids) & (Share.status == "active")))
    if active:
        raise CannotCarryOut(409, "already_shared", f"audience {audience_id!r} is already shared with {active[0]!r}")


def audiences_exist(audience_ids: list[str]) -> None:
    """An ad group can target only audiences the store holds."""
    if not audience_ids:
        return
    known = {a.id for a in Audience.select(Audience.id).where(Audience.id.in_(audience_ids))}
    unknown = [a for a in audience_ids if a not in known]
    if unknown:
        raise CannotCarryOut(422, "unknown_audience", f"no audience with id {unknown[0]!r} to target")

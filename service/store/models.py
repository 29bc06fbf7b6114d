"""The entities of SPEC §2 as Peewee models, bound at start-up through ``database``."""

from __future__ import annotations

import datetime

import peewee as pw

database = pw.DatabaseProxy()


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


class BaseModel(pw.Model):
    class Meta:
        database = database
        legacy_table_names = False


class BusinessCenter(BaseModel):
    id = pw.CharField(primary_key=True, max_length=128)
    name = pw.CharField(max_length=256)
    cross_bc_allowlisted = pw.BooleanField(default=False)


class Account(BaseModel):
    id = pw.CharField(primary_key=True, max_length=128)
    name = pw.CharField(max_length=256)
    business_center = pw.ForeignKeyField(BusinessCenter, null=True, backref="accounts",
                                         on_delete="RESTRICT", index=True)
    terms_accepted_at = pw.DateTimeField(null=True)


class Audience(BaseModel):
    id = pw.CharField(primary_key=True, max_length=128)
    owner_account = pw.ForeignKeyField(Account, backref="audiences", index=True)
    name = pw.CharField(max_length=256)
    type = pw.CharField(max_length=16)  # custom | lookalike
    source = pw.CharField(max_length=32, default="")
    seed_audience = pw.ForeignKeyField("self", null=True, backref="lookalikes", index=True)
    status = pw.CharField(max_length=16, default="active")  # active | deleted
    member_count = pw.BigIntegerField(default=0)  # up to vocabulary.MAX_MEMBERS (migration 0004)
    revision = pw.BigIntegerField(default=1)
    created_at = pw.DateTimeField(default=utcnow)
    updated_at = pw.DateTimeField(default=utcnow)
    deleted_at = pw.DateTimeField(null=True)


class Share(BaseModel):
    id = pw.BigAutoField()
    audience = pw.ForeignKeyField(Audience, backref="shares")
    recipient_account = pw.ForeignKeyField(Account, backref="received_shares")
    status = pw.CharField(max_length=16, default="active")  # active | stopped
    created_at = pw.DateTimeField(default=utcnow)
    created_by = pw.CharField(max_length=128)
    stopped_at = pw.DateTimeField(null=True)
    stopped_by = pw.CharField(max_length=128, null=True)
    stop_action = pw.CharField(max_length=32, null=True)  # stop | owner_delete | recipient_remove

    class Meta:
        table_name = "audience_share"  # SHARE is an SQL keyword
        indexes = (
            (("audience", "recipient_account", "status"), False),
            (("recipient_account", "status"), False),
        )


# At most one active share per (audience, recipient), kept by the database itself.
Share.add_index(Share.index(Share.audience, Share.recipient_account, unique=True,
                            where=(Share.status == "active"), name="audience_share_one_active"))


class AdGroup(BaseModel):
    id = pw.CharField(primary_key=True, max_length=128)
    account = pw.ForeignKeyField(Account, backref="ad_groups", index=True)
    name = pw.CharField(max_length=256)
    status = pw.CharField(max_length=16, default="enabled")  # enabled | paused
    updated_at = pw.DateTimeField(default=utcnow)


class AdGroupAudience(BaseModel):
    """One audience in an ad group's include or exclude list, in list order."""

    ad_group = pw.ForeignKeyField(AdGroup, backref="targeting", on_delete="CASCADE")
    audience = pw.ForeignKeyField(Audience, backref="targeted_by")
    mode = pw.CharField(max_length=8)  # include | exclude
    position = pw.IntegerField(default=0)

    class Meta:
        primary_key = pw.CompositeKey("ad_group", "audience")
        indexes = ((("audience", "ad_group"), False),)


class Event(BaseModel):
    """Append-only: every applied side effect and state change, in order."""

    id = pw.BigAutoField()
    type = pw.CharField(max_length=32)
    audience_id = pw.CharField(max_length=128, null=True, index=True)
    account_id = pw.CharField(max_length=128, null=True)
    decision_id = pw.CharField(max_length=64, null=True)
    payload = pw.TextField()  # JSON
    at = pw.DateTimeField(default=utcnow)


class DecisionLog(BaseModel):
    id = pw.BigAutoField()
    decision_id = pw.CharField(max_length=64, unique=True)
    at = pw.DateTimeField(default=utcnow)
    principal = pw.CharField(max_length=128)
    action = pw.CharField(max_length=32)
    resource = pw.TextField()  # JSON
    decision = pw.CharField(max_length=8)
    reasons = pw.TextField()  # JSON
    policy_version = pw.CharField(max_length=64)
    relation = pw.CharField(max_length=16)
    facts = pw.TextField()  # JSON: what the decision was made on, for replay and audit
    rule_line = pw.IntegerField(null=True)  # the policy.csv line that decided
    request_id = pw.CharField(max_length=128, null=True, index=True)  # X-Request-Id of the call (migrations 0005, 0007)
    trace_id = pw.CharField(max_length=32, null=True)  # W3C trace id of a traced call (migration 0008)

    class Meta:
        # one account's decisions, newest first, without a scan (the console's filter)
        indexes = ((("principal", "id"), False),)


# Covering indexes of the hot path (engine/facts.py): the facts of an audience or an
# account come from one index B-tree, without a second lookup into the table.
Audience.add_index(Audience.index(Audience.id, Audience.owner_account, Audience.type, Audience.source,
                                  Audience.status, Audience.seed_audience, name="audience_facts"))
Account.add_index(Account.index(Account.id, Account.business_center, Account.terms_accepted_at,
                                name="account_facts"))

class IdempotencyKey(BaseModel):
    """The first answer of an action called with an ``Idempotency-Key`` (store/idempotency.py),
    written in the action's own transaction (migration 0006)."""

    id = pw.BigAutoField()
    scope = pw.CharField(max_length=64)  # whose key: the caller's token identity
    key = pw.CharField(max_length=255)
    fingerprint = pw.CharField(max_length=64)  # sha256 of method, path, body, acting account, context
    outcome = pw.CharField(max_length=8)  # result | denied
    body = pw.TextField()  # JSON
    created_at = pw.DateTimeField(default=utcnow, index=True)

    class Meta:
        indexes = ((("scope", "key"), True),)


TABLES = [BusinessCenter, Account, Audience, Share, AdGroup, AdGroupAudience, Event, DecisionLog,
          IdempotencyKey]

"""The schema as first released: business centers, accounts, audiences, shares, ad groups
and their targeting, events, decision log.

A frozen copy of the models of that release, so that later changes to store/models.py
never change what this migration does (a later change gets a migration of its own).
"""
import datetime

from peewee import (
    AutoField,
    BooleanField,
    CharField,
    CompositeKey,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)


def up(migrator, db):
    def now():
        return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)

    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class BusinessCenter(Base):
        id = CharField(primary_key=True, max_length=128)
        name = CharField(max_length=256)
        cross_bc_allowlisted = BooleanField(default=False)

    class Account(Base):
        id = CharField(primary_key=True, max_length=128)
        name = CharField(max_length=256)
        business_center = ForeignKeyField(BusinessCenter, null=True, on_delete="RESTRICT", index=True)
        terms_accepted_at = DateTimeField(null=True)

    class Audience(Base):
        id = CharField(primary_key=True, max_length=128)
        owner_account = ForeignKeyField(Account, index=True)
        name = CharField(max_length=256)
        type = CharField(max_length=16)
        source = CharField(max_length=32, default="")
        seed_audience = ForeignKeyField("self", null=True, index=True)
        status = CharField(max_length=16, default="active")
        member_count = IntegerField(default=0)
        revision = IntegerField(default=1)
        created_at = DateTimeField(default=now)
        updated_at = DateTimeField(default=now)
        deleted_at = DateTimeField(null=True)

    class Share(Base):
        id = AutoField()
        audience = ForeignKeyField(Audience)
        recipient_account = ForeignKeyField(Account)
        status = CharField(max_length=16, default="active")
        created_at = DateTimeField(default=now)
        created_by = CharField(max_length=128)
        stopped_at = DateTimeField(null=True)
        stopped_by = CharField(max_length=128, null=True)
        stop_action = CharField(max_length=32, null=True)

        class Meta:
            table_name = "audience_share"
            indexes = (
                (("audience", "recipient_account", "status"), False),
                (("recipient_account", "status"), False),
            )

    Share.add_index(Share.index(Share.audience, Share.recipient_account, unique=True,
                                where=(Share.status == "active"), name="audience_share_one_active"))

    class AdGroup(Base):
        id = CharField(primary_key=True, max_length=128)
        account = ForeignKeyField(Account, index=True)
        name = CharField(max_length=256)
        status = CharField(max_length=16, default="enabled")
        updated_at = DateTimeField(default=now)

    class AdGroupAudience(Base):
        ad_group = ForeignKeyField(AdGroup, on_delete="CASCADE")
        audience = ForeignKeyField(Audience)
        mode = CharField(max_length=8)
        position = IntegerField(default=0)

        class Meta:
            primary_key = CompositeKey("ad_group", "audience")
            indexes = ((("audience", "ad_group"), False),)

    class Event(Base):
        id = AutoField()
        type = CharField(max_length=32)
        audience_id = CharField(max_length=128, null=True, index=True)
        account_id = CharField(max_length=128, null=True)
        decision_id = CharField(max_length=64, null=True)
        payload = TextField()
        at = DateTimeField(default=now)

    class DecisionLog(Base):
        id = AutoField()
        decision_id = CharField(max_length=64, unique=True)
        at = DateTimeField(default=now)
        principal = CharField(max_length=128)
        action = CharField(max_length=32)
        resource = TextField()
        decision = CharField(max_length=8)
        reasons = TextField()
        policy_version = CharField(max_length=64)
        relation = CharField(max_length=16)
        facts = TextField()
        rule_line = IntegerField(null=True)

    # safe: a database made by a release before migrations existed already has these
    db.create_tables([BusinessCenter, Account, Audience, Share, AdGroup, AdGroupAudience, Event,
                      DecisionLog], safe=True)

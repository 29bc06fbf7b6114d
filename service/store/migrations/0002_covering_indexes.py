"""Covering indexes of the hot path (engine/facts.py): the facts of an audience or an
account come from one index B-tree, without a second lookup into the table.

The statements are those peewee writes for the models' indexes, so that a migrated
database and a freshly created one describe the same schema; IF NOT EXISTS because a
database created from the models before migrations were recorded has them already."""


def up(migrator, db):
    db.execute_sql('CREATE INDEX IF NOT EXISTS "audience_facts" ON "audience"'
                   ' ("id", "owner_account_id", "type", "source", "status", "seed_audience_id")')
    db.execute_sql('CREATE INDEX IF NOT EXISTS "account_facts" ON "account" ("id", "business_center_id", "terms_accepted_at")')

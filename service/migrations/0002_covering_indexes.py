"""Covering indexes of the hot path (service/facts.py): the facts of an audience or an
account come from one index B-tree, without a second lookup into the table."""


def up(migrator, db):
    db.execute_sql("CREATE INDEX IF NOT EXISTS audience_facts ON audience"
                   " (id, owner_account_id, type, source, status, seed_audience_id)")
    db.execute_sql("CREATE INDEX IF NOT EXISTS account_facts ON account"
                   " (id, business_center_id, terms_accepted_at)")

"""The decision log by account, newest first: the index the console's Decisions page reads
when it is filtered to one account ("why was this account denied?"), instead of a scan.

The statement is the one peewee writes for the model's index, so that a migrated database
and a freshly created one describe the same schema."""


def up(migrator, db):
    db.execute_sql('CREATE INDEX IF NOT EXISTS "decision_log_principal_id" ON "decision_log" ("principal", "id")')

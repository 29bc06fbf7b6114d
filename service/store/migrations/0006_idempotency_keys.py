"""The first answers of actions called with an Idempotency-Key (store/idempotency.py): a
retried call is answered again instead of applied again."""

import peewee as pw


def up(migrator, db):
    if "idempotency_key" in db.get_tables():  # created from the models
        return

    class IdempotencyKey(pw.Model):  # the table as this migration made it
        id = pw.BigAutoField()
        scope = pw.CharField(max_length=64)
        key = pw.CharField(max_length=255)
        fingerprint = pw.CharField(max_length=64)
        outcome = pw.CharField(max_length=8)
        body = pw.TextField()
        created_at = pw.DateTimeField(index=True)

        class Meta:
            database = db
            legacy_table_names = False
            indexes = ((("scope", "key"), True),)

    db.create_tables([IdempotencyKey])

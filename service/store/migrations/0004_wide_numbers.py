"""Numbers as wide as the API's: member counts up to 10^12 (and the ids of the feeds and
shares past 2^31) do not fit PostgreSQL's 32-bit ``integer``, so those columns become
``bigint`` (their sequences too). SQLite's INTEGER is 64-bit already: nothing to do there.

The statements give the types peewee writes for BigIntegerField and BigAutoField, so that a
migrated database and a freshly created one describe the same schema."""

from peewee import PostgresqlDatabase

_COLUMNS = [("audience", "member_count"), ("audience", "revision"),
            ("audience_share", "id"), ("event", "id"), ("decision_log", "id")]
_SEQUENCES = ["audience_share_id_seq", "event_id_seq", "decision_log_id_seq"]


def up(migrator, db):
    if not isinstance(db, PostgresqlDatabase):
        return
    for table, column in _COLUMNS:
        db.execute_sql(f'ALTER TABLE "{table}" ALTER COLUMN "{column}" TYPE BIGINT')
    for sequence in _SEQUENCES:
        db.execute_sql(f'ALTER SEQUENCE "{sequence}" AS BIGINT')

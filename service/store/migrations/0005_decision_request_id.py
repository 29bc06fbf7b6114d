"""The decision log records the X-Request-Id of the call that was decided, so an operator
goes from an access-log line to its decisions and back (the access line names the
decision ids). Null for decisions made without a request (bulk import, scope changes)."""

from peewee import CharField


def up(migrator, db):
    if "request_id" not in {c.name for c in db.get_columns("decision_log")}:  # created from the models
        migrator.migrate(migrator.add_column("decision_log", "request_id", CharField(max_length=128, null=True)))

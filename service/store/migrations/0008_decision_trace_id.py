"""The decision log records the W3C trace id of a traced call, so an operator goes from a
trace to its decisions and back. Null when the call was not traced (tracing is off by
default) and for decisions made without a request."""

from peewee import CharField


def up(migrator, db):
    if "trace_id" not in {c.name for c in db.get_columns("decision_log")}:  # created from the models
        migrator.migrate(migrator.add_column("decision_log", "trace_id", CharField(max_length=32, null=True)))

"""Decisions looked up by the request that asked for them (``GET /v1/decisions?request_id=``)
read an index, not the whole log."""


def up(migrator, db):
    if "decision_log_request_id" not in {i.name for i in db.get_indexes("decision_log")}:  # created from the models
        migrator.migrate(migrator.add_index("decision_log", ("request_id",), False))

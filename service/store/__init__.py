"""Storing: the models, the database, locks, the transaction runner and the effects applied in SQL."""

"""The HTTP surface: the Flask app, its routes, schemas, errors, auth, logs, metrics and server."""

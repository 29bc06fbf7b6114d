"""Tools for policy authors: check, policy unit tests, matrix, diff against the log, hot reload."""

"""Helpers of the production tests: fresh databases, the CLI in a subprocess, JSON log lines."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import uuid

import psycopg2
import pytest

from tests.support import ROOT, postgres_database

DATABASES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.full)]  # PostgreSQL: the full tier


@contextlib.contextmanager
def fresh_database(kind: str, tmp_path):
    """The URL of a new, empty database of ``kind``."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / f'authz-{uuid.uuid4().hex[:8]}.db'}"
    else:
        with postgres_database() as url:
            yield url


def cli(*args: str, env: dict | None = None, input: str | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess:
    """``audience-authz ARGS`` in a subprocess."""
    return subprocess.run([sys.executable, "-m", "audience_authz", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, input=input, timeout=timeout)


def json_lines(text: str) -> list[dict]:
    """Every non-empty line of ``text`` parsed as a JSON object (fails on any other line).

    Lines end at ``\\n`` only: a logged value may hold U+2028 or U+0085, which JSON leaves
    unescaped and ``str.splitlines`` would take for line ends."""
    records = []
    for line in text.split("\n"):
        if line.strip():
            record = json.loads(line)
            assert isinstance(record, dict), line
            records.append(record)
    return records


def broken_decision_answer(url: str) -> tuple[int, str]:
    """What a decision answers after ``break_decisions``: SQLite reports a missing table as
    an OperationalError (503 database_unavailable), PostgreSQL as a ProgrammingError (500
    internal_error); both fail closed."""
    return (503, "database_unavailable") if url.startswith("sqlite") else (500, "internal_error")


def break_decisions(url: str) -> None:
    """Make every audience decision fail: the facts statement reads audience_share, which
    goes away (a real database error on each decision)."""
    statement = "ALTER TABLE audience_share RENAME TO audience_share_away"
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url[len("sqlite:///"):]) as conn:
            conn.execute(statement)
    else:
        with psycopg2.connect(url) as conn, conn.cursor() as cur:
            cur.execute(statement)

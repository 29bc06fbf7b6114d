"""The figures of a reliability run, kept: when AUDIENCE_AUTHZ_STRESS_RESULTS names a file
(`make stress` sets it), each concurrency, fault and fuzz test adds what it counted
(requests, errors, invariant violations, fuzz cases) under its name and database.

The file is a run's record, not a log: its first test stamps the commit, the time and the
sizes, and every write replaces the whole file atomically, so a run cut short leaves the
figures of the tests that finished. Unset (a plain `make test`), nothing is written.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from tests.support import ROOT

VARIABLE = "AUDIENCE_AUTHZ_STRESS_RESULTS"
SIZES = "AUDIENCE_AUTHZ_STRESS_"
OUTPUTS = (":!stress-results.json", ":!docs/reliability.md")  # what the run itself rewrites


def record(test: str, database: str, **figures) -> None:
    """Add one test's figures on one database to the results file, if a run keeps one."""
    target = os.environ.get(VARIABLE)
    if not target:
        return
    path = Path(target)
    results = json.loads(path.read_text()) if path.exists() else _run()
    results["tests"] = [t for t in results["tests"] if (t["test"], t["database"]) != (test, database)]
    results["tests"].append({"test": test, "database": database, **figures})
    results["finished_at"] = _now()
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=path.name, delete=False) as out:
        json.dump(results, out, indent=2, sort_keys=False)
        out.write("\n")
    os.replace(out.name, path)


def server_errors(statuses) -> int:
    """How many of the answers counted by status (a Counter) were 5xx."""
    return sum(n for status, n in statuses.items() if status >= 500)


def _run() -> dict:
    """What the whole run shares: where it ran, from which commit, at which sizes."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", ".", *OUTPUTS))
    return {"commit": git("rev-parse", "HEAD"), "dirty": dirty,
            "started_at": _now(), "finished_at": None, "cpus": os.cpu_count(), "python": platform.python_version(),
            "sizes": {k[len(SIZES):].lower(): int(v) for k, v in sorted(os.environ.items())
                      if k.startswith(SIZES) and k != VARIABLE and v.isdigit()},
            "tests": []}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")

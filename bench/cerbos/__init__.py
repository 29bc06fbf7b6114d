"""The Cerbos PDP beside the service: its requests, its server, and the cross-check.

Cerbos is stateless: a caller who keeps its data in a database reads the attributes of
each decision itself and sends them along. ``Attributes`` does that reading with the
benchmark's own SQL (not the service's engine/facts.py), and builds the bodies of
``POST /api/check/resources``: one resource and one action for a single check, one
principal with many resources for the batch form. The policy is ``policies/`` (derived
roles owner and recipient, the audience actions of policy/policy.csv); ``make
bench-install`` installs the PDP (npm package ``@cerbos/cerbos-linux-x64``, pinned in the
Makefile) into ``bench/.cerbos/``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE = HERE.parent / ".cerbos" / "node_modules" / "@cerbos" / "cerbos-linux-x64"
BINARY = PACKAGE / "cerbos-linux-x64"
CHECK_PATH = "/api/check/resources"


def version() -> str | None:
    with contextlib.suppress(OSError, ValueError):
        return json.loads((PACKAGE / "package.json").read_text())["version"]
    return None


class Attributes:
    """What Cerbos must be told for a request, read from the store."""

    def __init__(self, store_path):
        self.conn = sqlite3.connect(f"file:{store_path}?mode=ro", uri=True)

    def close(self) -> None:
        self.conn.close()

    def _account(self, account_id: str | None) -> tuple[bool, str, bool]:
        """(known, Business Center or "", terms accepted)."""
        row = None if account_id is None else self.conn.execute(
            "SELECT business_center_id, terms_accepted_at FROM account WHERE id = ?", [account_id]).fetchone()
        if row is None:
            return False, "", False
        return True, row[0] or "", row[1] is not None

    def principal(self, account_id: str) -> dict:
        known, bc, terms = self._account(account_id)
        return {"id": account_id, "roles": ["account"],
                "attr": {"known": known, "bc": bc, "terms_accepted": terms}}

    def resource(self, req) -> dict:
        row = self.conn.execute(
            "SELECT a.owner_account_id, a.type, a.source, a.status, seed.status, seed.source, bc.cross_bc_allowlisted"
            " FROM audience a LEFT JOIN audience seed ON seed.id = a.seed_audience_id"
            " JOIN account o ON o.id = a.owner_account_id"
            " LEFT JOIN business_center bc ON bc.id = o.business_center_id WHERE a.id = ?",
            [req.audience_id]).fetchone()
        owner, kind, source, status, seed_status, seed_source, allowlisted = row or ("", "", "", "", "", "", False)
        recipients = [r for (r,) in self.conn.execute(
            "SELECT recipient_account_id FROM audience_share WHERE audience_id = ? AND status = 'active'",
            [req.audience_id])]
        target_known, target_bc, _ = self._account(req.target_account_id)
        group = None if req.ad_group_id is None else self.conn.execute(
            "SELECT account_id FROM ad_group WHERE id = ?", [req.ad_group_id]).fetchone()
        attached = 0
        if req.action == "delete":
            (attached,) = self.conn.execute(
                "SELECT COUNT(*) FROM ad_group_audience t JOIN ad_group g ON g.id = t.ad_group_id"
                " WHERE t.audience_id = ? AND g.account_id = ?", [req.audience_id, req.principal]).fetchone()
        attr = {
            "known": row is not None, "owner": owner, "recipients": recipients, "type": kind,
            "source": source or "", "status": status, "seed_status": seed_status or "",
            "seed_source": seed_source or "",
            "owner_bc_allowlisted": bool(allowlisted),
            "target": {"specified": req.target_account_id is not None, "id": req.target_account_id or "",
                       "known": target_known, "bc": target_bc},
            "ad_group": {"specified": req.ad_group_id is not None, "known": group is not None,
                         "account": group[0] if group else ""},
            "attached_ad_groups": attached,
        }
        return {"kind": "audience", "id": req.audience_id, "attr": attr}

    def check(self, req) -> dict:
        """The body of one check: one principal, one resource, one action."""
        return self.batch([req])

    def batch(self, reqs) -> dict:
        """The body of a batch check: the principal of ``reqs`` (one for all), a resource each."""
        principals = {r.principal for r in reqs}
        if len(principals) != 1:
            raise ValueError("a Cerbos check has one principal")
        return {"requestId": "bench", "principal": self.principal(reqs[0].principal),
                "resources": [{"actions": [r.action], "resource": self.resource(r)} for r in reqs]}


def decisions(answer: dict, body: dict) -> list[str]:
    """allow/deny of each resource of ``body``, in order, from Cerbos's answer."""
    out = []
    for asked, result in zip(body["resources"], answer["results"]):
        (action,) = asked["actions"]
        out.append("allow" if result["actions"][action] == "EFFECT_ALLOW" else "deny")
    if len(out) != len(body["resources"]):
        raise RuntimeError(f"Cerbos answered {len(answer['results'])} of {len(body['resources'])} resources")
    return out


class Client:
    """One kept-alive HTTP connection to the PDP (for the cross-check, not the timing)."""

    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def ask(self, body: dict) -> list[str]:
        self.conn.request("POST", CHECK_PATH, json.dumps(body), {"Content-Type": "application/json"})
        response = self.conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"Cerbos answered {response.status}: {data[:500]!r}")
        return decisions(json.loads(data), body)

    def close(self) -> None:
        self.conn.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server(log_path: Path, policy_dir: Path | None = None):
    """The PDP on free ports of 127.0.0.1 with the policies of ``policy_dir`` (default
    ``policies/``); yields (base url, port, pid)."""
    if not BINARY.exists():
        raise RuntimeError(f"Cerbos is not installed at {BINARY} (make bench-install installs it)")
    port, grpc = _free_port(), _free_port()
    args = [str(BINARY), "server", f"--config={HERE / 'config.yaml'}",
            f"--set=server.httpListenAddr=127.0.0.1:{port}", f"--set=server.grpcListenAddr=127.0.0.1:{grpc}",
            f"--set=storage.disk.directory={policy_dir or HERE / 'policies'}", "--log-level=WARN"]
    with log_path.open("w") as out:
        process = subprocess.Popen(args, cwd=HERE, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ))
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"Cerbos exited: {log_path.read_text()[-2000:]}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                conn.request("GET", "/_cerbos/health")
                if conn.getresponse().status == 200:
                    conn.close()
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"Cerbos did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}", port, process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

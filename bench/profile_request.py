"""POST /v1/authorize through the Flask app in process (no sockets, no HTTP server), in a
fresh process set up as a served worker is (JSON logs at INFO, written to /dev/null):

    python -m bench.profile_request [--store PATH]    # pyinstrument's tree
    python -m bench.profile_request --cprofile        # cProfile's top functions
    python -m bench.profile_request --json            # what bench/run.py keeps (wsgi_side)

``--json`` times POST /v1/authorize and GET /healthz in alternating rounds (each request's
latency) and then profiles the authorize path with cProfile, giving the share of each part
of it (``PARTS``); the benchmark keeps both in its result file, docs/performance.md shows
them. A process of its own, because the benchmark's own heap (its requests, results and
peers) would make every collection of the garbage collector, and so the path, slower."""

from __future__ import annotations

import cProfile
import io
import json
import os
import pstats
import sys
import time
from pathlib import Path

import click

from bench.run import BENCH, TOKEN

# the parts of a request, as (label, file suffix, function): cumulative time in each
PARTS = [
    ("the decision: Authorizer.check", "engine/authorizer.py", "check"),
    ("  facts: the SQL statement and its row", "engine/facts.py", "gather"),
    ("  the policy: Policy.decide (pycasbin)", "engine/policy.py", "decide"),
    ("  the decision log row (and its batched write)", "engine/authorizer.py", "log_decision"),
    ("body parsing and validation (flask-openapi3, pydantic)", "flask_openapi3/request.py", "_validate_request"),
    ("bearer token check", "http/auth.py", "authenticate"),
    ("rate limit", "http/auth.py", "rate_limited"),
    ("database connection from the pool, and back", "http/app.py", "open_connection"),
    ("", "http/app.py", "release_connection"),
    ("JSON access line", "http/logs.py", "access"),
    ("request id", "http/logs.py", "started"),
    ("latency metric", "http/metrics.py", "observe"),
    ("the JSON answer (Flask response)", "flask/app.py", "make_response"),
    ("request context (Flask, werkzeug)", "flask/app.py", "request_context"),
]


def parts(stats: pstats.Stats, requests: int) -> dict:
    """Cumulative seconds of each part of ``PARTS`` per request, and its share of the whole."""
    cumulative = {}
    total = 0.0
    for (filename, _line, function), (_cc, _nc, _tt, ct, _callers) in stats.stats.items():
        if filename.endswith("flask/app.py") and function == "wsgi_app":
            total += ct
        for label, suffix, name in PARTS:
            if function == name and filename.endswith(suffix):
                cumulative[(label, suffix, name)] = cumulative.get((label, suffix, name), 0.0) + ct
    rows = []
    for label, suffix, name in PARTS:
        ct = cumulative.get((label, suffix, name), 0.0)
        if not label and rows:  # the second half of the part above
            rows[-1]["us"] += ct / requests * 1e6
            rows[-1]["share"] += ct / total
            continue
        rows.append({"part": label, "function": f"{suffix}:{name}", "us": ct / requests * 1e6, "share": ct / total})
    for row in rows:
        row["us"], row["share"] = round(row["us"], 1), round(row["share"], 3)
    return {"requests": requests, "total_us_profiled": round(total / requests * 1e6, 1), "parts": rows}


@click.command()
@click.option("--store", default=str(BENCH / ".stores" / "store-100000.db"), type=click.Path(exists=True))
@click.option("--requests", "n", default=3000, show_default=True)
@click.option("--cprofile", is_flag=True, help="cProfile's top functions instead of pyinstrument's tree")
@click.option("--json", "as_json", is_flag=True, help="the share of each part of the path, as JSON")
@click.option("--top", default=30, show_default=True)
def main(store, n, cprofile, as_json, top):
    import logging

    from werkzeug.test import EnvironBuilder

    from audience_authz import config
    from audience_authz.http import logs
    from audience_authz.http.app import create_app
    from bench import workload
    from bench.build_store import Sizes, store_meta

    logs.configure("INFO")  # as served: the JSON access line of every request is written
    handler = logging.getLogger().handlers[0]
    handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 - the handler keeps it open for the whole run
    sizes = Sizes(**store_meta(Path(store))["sizes"])
    requests = workload.draw(store, sizes, n, seed=5)
    app = create_app(config.load(database=f"sqlite:///{store}", tokens=TOKEN))
    base = EnvironBuilder(path="/v1/authorize", method="POST", data=b"{}", headers={
        "Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}).get_environ()
    bodies = [json.dumps(workload.as_body(r), separators=(",", ":")).encode() for r in requests]

    def start_response(status, headers, exc_info=None):
        if not status.startswith("200"):
            raise RuntimeError(status)

    def authorize(body):
        environ = dict(base, CONTENT_LENGTH=str(len(body)))
        environ["wsgi.input"] = io.BytesIO(body)
        b"".join(app(environ, start_response))

    ping = EnvironBuilder(path="/healthz", method="GET").get_environ()

    def healthz(_):
        b"".join(app(dict(ping), start_response))

    def listing(query: str):
        """A page of an account's audience list (the accounts of the drawn requests)."""
        def get(account: str):
            environ = EnvironBuilder(path=f"/v1/accounts/{account}/audiences", query_string=query, headers={
                "Authorization": f"Bearer {TOKEN}", "X-Account-Id": account}).get_environ()
            b"".join(app(environ, start_response))
        return get

    for body in bodies:  # warm-up
        authorize(body)
    timings = {}
    if as_json:
        from bench.run import percentiles, timed

        for _round in range(2):
            for name, fn in (("authorize", authorize), ("ping", healthz)):
                timings.setdefault(name, []).extend(timed(fn, bodies))
        import sqlite3

        with sqlite3.connect(store) as conn:  # accounts that own or receive audiences
            accounts = [row[0] for row in conn.execute(
                "SELECT DISTINCT owner_account_id FROM audience ORDER BY random() LIMIT 300")]
        for name, query in (("list", "limit=100"), ("list_apply", "limit=100&action=apply")):
            timings[name] = timed(listing(query), accounts)
        timings = {name: percentiles(seconds) for name, seconds in timings.items()}
    started = time.perf_counter()
    if cprofile or as_json:
        profiler = cProfile.Profile()
        profiler.enable()
        for body in bodies:
            authorize(body)
        profiler.disable()
        stats = pstats.Stats(profiler, stream=io.StringIO())
        if as_json:
            click.echo(json.dumps({**timings, "profile": parts(stats, len(bodies))}))
            return
        stats.stream = sys.stdout
        stats.sort_stats("tottime").print_stats(top)
        stats.sort_stats("cumtime").print_stats(top)
    else:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005)
        profiler.start()
        for body in bodies:
            authorize(body)
        profiler.stop()
        click.echo(profiler.output_text(unicode=True, color=False, show_all=False))
    click.echo(f"{(time.perf_counter() - started) / len(bodies) * 1e6:.1f} µs per request (profiled)", err=True)


if __name__ == "__main__":
    main()

"""A profile of POST /v1/authorize through the Flask app in process (no sockets), the way
``wsgi_side`` of bench/run.py calls it: ``python -m bench.profile_request [--store PATH]``
prints pyinstrument's tree, or with ``--cprofile`` the top functions by own time."""

from __future__ import annotations

import cProfile
import io
import json
import pstats
import time
from pathlib import Path

import click

from bench.run import BENCH, TOKEN


@click.command()
@click.option("--store", default=str(BENCH / ".stores" / "store-100000.db"), type=click.Path(exists=True))
@click.option("--requests", "n", default=3000, show_default=True)
@click.option("--cprofile", is_flag=True, help="cProfile's top functions instead of pyinstrument's tree")
@click.option("--top", default=30, show_default=True)
def main(store, n, cprofile, top):
    import logging

    from werkzeug.test import EnvironBuilder

    from audience_authz import config
    from audience_authz.http import logs
    from audience_authz.http.app import create_app
    from bench import workload
    from bench.build_store import Sizes, store_meta

    logs.configure("INFO")  # as served: the JSON access line of every request is written
    handler = logging.getLogger().handlers[0]
    handler.setStream(open("/dev/null", "w"))
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

    for body in bodies:  # warm-up
        authorize(body)
    started = time.perf_counter()
    if cprofile:
        profiler = cProfile.Profile()
        profiler.enable()
        for body in bodies:
            authorize(body)
        profiler.disable()
        stats = pstats.Stats(profiler)
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

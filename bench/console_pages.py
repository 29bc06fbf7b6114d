"""How fast each console page answers on a benchmark store (issue: every page well under
100 ms on the 1M-entity store). Serves the app in process (Flask's test client, a logged-in
session) on a copy of a store that ``bench.run`` built, and prints the median of each page.

    python -m bench.console_pages --store bench/.stores/store-1000000.db
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import click

PAGES = ["/console/rules", "/console/matrix", "/console/try", "/console/decisions",
         "/console/decisions?decision=deny", "/console/decisions?account={account}",
         "/console/events", "/console/candidate", "/console/pick?kind=audience&q=a"]


@click.command()
@click.option("--store", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--repeat", default=7, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="also write the medians as JSON")
def main(store, repeat, out):
    from audience_authz import config
    from audience_authz.http.app import create_app
    from audience_authz.store.models import Account, database

    work = Path(tempfile.mkdtemp(prefix="console-pages-"))
    copy = work / "store.db"
    shutil.copyfile(store, copy)  # the console's own decisions and sessions stay off the kept store
    try:
        app = create_app(config.load(database=f"sqlite:///{copy}", tokens="bench-token"))
        client = app.test_client()
        login = client.get("/console/login").get_data(as_text=True)
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', login).group(1)
        assert client.post("/console/login", data={"token": "bench-token", "csrf_token": csrf}).status_code == 302
        with database.connection_context():
            account = Account.select(Account.id).order_by(Account.id).first().id
        medians = {}
        for page in PAGES:
            path = page.format(account=account)
            seconds = []
            for _ in range(repeat):
                started = time.perf_counter()
                response = client.get(path)
                seconds.append(time.perf_counter() - started)
                assert response.status_code == 200, (path, response.status_code)
            medians[path] = round(statistics.median(seconds) * 1000, 1)
            click.echo(f"{medians[path]:8.1f} ms  {path}")
        if out:
            Path(out).write_text(json.dumps({"store": Path(store).name, "median_ms": medians}, indent=2) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

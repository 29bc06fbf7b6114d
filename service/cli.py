"""The ``audience-authz`` command: serve, demo, policy tools."""

from __future__ import annotations

import logging
import sys

import click

from .policy import DEFAULT_POLICY_DIR

DATABASE_HELP = "sqlite:///PATH (default: ./audience-authz.db) or postgresql://user@host/db"


@click.group()
def main():
    """Audience sharing authorization service."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--database", "database_url", default=None, help=DATABASE_HELP)
@click.option("--policy-dir", default=str(DEFAULT_POLICY_DIR), show_default=True,
              type=click.Path(exists=True, file_okay=False))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="gunicorn worker processes")
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 256),
              help="threads per worker")
@click.option("--dev", is_flag=True, help="Flask's development server instead of gunicorn (not for production)")
def serve(host, port, database_url, policy_dir, workers, threads, dev):
    """Serve the HTTP API under gunicorn (production) or, with --dev, Flask's own server."""
    if not dev:
        from .server import prepare_metrics_dir

        prepare_metrics_dir()  # the workers' shared metrics: before prometheus_client is imported
    from . import db, logs
    from .app import create_app, generated_token, tokens_from_env
    from .policy import Policy

    logs.configure()

    tokens = tokens_from_env()
    if not tokens:
        tokens = [generated_token()]
        click.echo(f"AUDIENCE_AUTHZ_TOKENS is not set; this server's token is: {tokens[0]}", err=True)
    policy = Policy.load(policy_dir)  # fail before forking when the policy cannot load
    _init_database(database_url)  # create or check the schema once, before the workers start
    db.close()
    logging.getLogger("audience_authz").info(
        f"serving on http://{host}:{port} with {'Flask (development)' if dev else f'gunicorn, {workers} worker(s)'}"
        f" (policy {policy.version})")
    app_kwargs = {"database_url": database_url, "policy_dir": policy_dir, "tokens": tokens}
    if dev:
        create_app(**app_kwargs).run(host=host, port=port, threaded=True, use_reloader=False)
    else:
        from .server import run

        run(app_kwargs, host=host, port=port, workers=workers, threads=threads)


def _init_database(database_url):
    """Bind the database; a schema behind this release's migrations is refused."""
    from . import db
    from .migrations import SchemaBehind

    try:
        return db.init(database_url)
    except SchemaBehind as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.option("--database", "database_url", default=None, help=DATABASE_HELP)
def demo(database_url):
    """Load the source's scenario (one BC, owner, recipients, audiences A B C, ad groups)."""
    from . import db
    from . import demo as scenario
    from .authorizer import Authorizer
    from .policy import Policy

    _init_database(database_url)
    with click.progressbar(length=len(scenario.records()), label="loading the demo data",
                           file=sys.stderr) as bar:
        done = scenario.load(Authorizer(Policy.load()), on_line=lambda: bar.update(1))
    db.close()
    if not done:
        click.echo("demo data is already loaded")
    for line in done:
        click.echo(f"loaded {line}")


@main.command(name="import")
@click.argument("file", type=click.File("r", encoding="utf-8"))
@click.option("--database", "database_url", default=None, help=DATABASE_HELP)
@click.option("--policy-dir", default=str(DEFAULT_POLICY_DIR), show_default=True,
              type=click.Path(exists=True, file_okay=False))
def import_(file, database_url, policy_dir):
    """Load entities and shares in bulk from FILE (JSON Lines, '-' for stdin), each line
    through the same actions and policy as the API. Exit status 1 when any line was
    invalid, failed or denied (they are listed; the other lines are applied)."""
    from . import bulk, db
    from .authorizer import Authorizer
    from .policy import Policy

    authz = Authorizer(Policy.load(policy_dir))
    _init_database(database_url)
    lines = file.readlines()
    with click.progressbar(length=len(lines), label=f"importing {file.name}", file=sys.stderr) as bar:
        summary = bulk.import_lines(authz, lines, on_line=lambda: bar.update(1))
    db.close()
    for number, problem in summary.problems[:50]:
        click.echo(f"{file.name}:{number}: {problem}", err=True)
    if len(summary.problems) > 50:
        click.echo(f"... and {len(summary.problems) - 50} more", err=True)
    click.echo(summary.line())
    if not summary.ok:
        sys.exit(1)


@main.command()
@click.option("--database", "database_url", default=None, help=DATABASE_HELP)
@click.option("--check", is_flag=True, help="only report the schema's state; exit 1 when it is behind")
def migrate(database_url, check):
    """Bring the database schema up to this release (peewee's migration runner); a new
    database gets the whole schema. Safe to run on every deploy, before the new servers."""
    from . import db, migrations

    database = db.init(database_url, create=False)
    with database.connection_context():
        pending = migrations.pending(database)
        applied = migrations.applied(database)
    if check or not pending:
        state = f"pending: {', '.join(pending)}" if pending else "up to date"
        click.echo(f"schema {state} (applied: {', '.join(applied) or 'none'})")
        db.close()
        sys.exit(1 if pending else 0)
    with click.progressbar(length=len(pending), label="migrating", file=sys.stderr) as bar:
        done = migrations.upgrade(database, on_applied=lambda name: bar.update(1))
    db.close()
    click.echo(f"applied {len(done)} migration(s): {', '.join(done)}; schema up to date")


@main.group()
def policy():
    """Policy authoring tools: check, test, matrix."""


@policy.command()
@click.argument("policy_dir", default=str(DEFAULT_POLICY_DIR), type=click.Path(exists=True, file_okay=False))
def check(policy_dir):
    """Validate the policy files; report each problem with file and line."""
    from .policycheck import check_policy

    problems = check_policy(policy_dir)
    for file, line, message in problems:
        click.echo(f"{file}:{line}: {message}")
    if problems:
        click.echo(f"{len(problems)} problem(s)", err=True)
        sys.exit(1)
    click.echo("policy OK")

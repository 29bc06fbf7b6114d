"""The ``audience-authz`` command: serve, demo, policy tools."""

from __future__ import annotations

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
def serve(host, port, database_url, policy_dir):
    """Serve the HTTP API (Flask's threaded server)."""
    from .app import create_app, generated_token, tokens_from_env

    tokens = tokens_from_env()
    if not tokens:
        tokens = [generated_token()]
        click.echo(f"AUDIENCE_AUTHZ_TOKENS is not set; this server's token is: {tokens[0]}", err=True)
    app = create_app(database_url, policy_dir, tokens)
    click.echo(f"serving on http://{host}:{port} (policy {app.extensions['authz'].policy.version})",
               err=True)
    app.run(host=host, port=port, threaded=True, use_reloader=False)


@main.command()
@click.option("--database", "database_url", default=None, help=DATABASE_HELP)
def demo(database_url):
    """Load the source's scenario (one BC, owner, recipients, audiences A B C, ad groups)."""
    from . import db
    from . import demo as scenario
    from .authorizer import Authorizer
    from .policy import Policy

    db.init(database_url)
    done = scenario.load(Authorizer(Policy.load()))
    if not done:
        click.echo("demo data is already loaded")
    for line in done:
        click.echo(f"loaded {line}")


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

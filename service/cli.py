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
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="gunicorn worker processes")
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 256),
              help="threads per worker")
@click.option("--dev", is_flag=True, help="Flask's development server instead of gunicorn (not for production)")
def serve(host, port, database_url, policy_dir, workers, threads, dev):
    """Serve the HTTP API under gunicorn (production) or, with --dev, Flask's own server."""
    from . import db
    from .app import create_app, generated_token, tokens_from_env
    from .policy import Policy

    tokens = tokens_from_env()
    if not tokens:
        tokens = [generated_token()]
        click.echo(f"AUDIENCE_AUTHZ_TOKENS is not set; this server's token is: {tokens[0]}", err=True)
    policy = Policy.load(policy_dir)  # fail before forking when the policy cannot load
    db.init(database_url)  # create the tables once, before the workers start
    db.close()
    click.echo(f"serving on http://{host}:{port} with {'Flask (development)' if dev else f'gunicorn, {workers} worker(s)'}"
               f" (policy {policy.version})", err=True)
    app_kwargs = {"database_url": database_url, "policy_dir": policy_dir, "tokens": tokens}
    if dev:
        create_app(**app_kwargs).run(host=host, port=port, threaded=True, use_reloader=False)
    else:
        from .server import run

        run(app_kwargs, host=host, port=port, workers=workers, threads=threads)


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


def _load_policy_or_exit(policy_dir):
    from .policy import Policy, PolicyError

    try:
        return Policy.load(policy_dir)
    except PolicyError as exc:
        for file, line, message in exc.problems:
            click.echo(f"{file}:{line}: {message}")
        click.echo("the policy does not load; run `audience-authz policy check`", err=True)
        sys.exit(1)


@policy.command("test")
@click.argument("tests", required=False, type=click.Path(exists=True))
@click.option("--policy-dir", default=str(DEFAULT_POLICY_DIR), show_default=True,
              type=click.Path(exists=True, file_okay=False), help="the policy to test (e.g. a candidate)")
@click.option("--coverage/--no-coverage", default=True, show_default=True,
              help="also fail when a policy line, deny reason code, matrix cell or account action is untested")
@click.option("-q", "--quiet", is_flag=True, help="report only failures, errors and gaps")
def test_policy(tests, policy_dir, coverage, quiet):
    """Run the policy unit tests (TESTS: a YAML file or directory; default POLICY_DIR/tests)."""
    from pathlib import Path

    from .policytest import run_suite

    policy = _load_policy_or_exit(policy_dir)
    report = run_suite(policy, tests or Path(policy_dir) / "tests", coverage=coverage)
    labels = {"pass": click.style("ok   ", fg="green"), "fail": click.style("FAIL ", fg="red"),
              "error": click.style("ERROR", fg="red", bold=True)}
    for result in report.results:
        if quiet and result.status == "pass":
            continue
        click.echo(f"{labels[result.status]} {result.case.where}  {result.case.name}")
        for message in result.messages:
            click.echo(f"        {message}")
    for gap in report.gaps:
        click.echo(f"{click.style('UNTESTED', fg='yellow')} {gap}")
    summary = (f"{report.count('pass')} passed, {report.count('fail')} failed, {report.count('error')} errors"
               f"{f', {len(report.gaps)} coverage gaps' if coverage else ''} (policy {policy.version})")
    if not report.results:
        summary = f"no test cases found; {summary}"
    click.echo(summary, err=not report.ok)
    sys.exit(0 if report.ok else 1)

"""The ``audience-authz`` command: serve, demo, policy tools."""

from __future__ import annotations

import logging
import sys

import click

from audience_authz import config

DATABASE_HELP = "sqlite:///PATH (default: AUDIENCE_AUTHZ_DATABASE, else ./audience-authz.db) or postgresql://user@host/db"
POLICY_HELP = "the policy directory (default: AUDIENCE_AUTHZ_POLICY_DIR, else the shipped policy)"


def settings(**overrides) -> config.Settings:
    """The settings, with the options given on the command line over the environment's."""
    try:
        return config.load(**overrides)
    except config.SettingsError as exc:
        raise click.ClickException(str(exc)) from None


def _database_url(database_url):
    return settings(database=database_url).database


def _policy_dir(policy_dir):
    return settings(policy_dir=policy_dir).policy_dir


@click.group()
def main():
    """Audience sharing authorization service."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--database", "database_url", default=None, help=DATABASE_HELP)
@click.option("--policy-dir", default=None, help=POLICY_HELP,
              type=click.Path(exists=True, file_okay=False))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="gunicorn worker processes")
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 256),
              help="threads per worker")
@click.option("--dev", is_flag=True, help="Flask's development server instead of gunicorn (not for production)")
@click.option("--policy-poll", default=1.0, show_default=True, type=click.FloatRange(0),
              help="seconds between checks of the policy files for changes (0: only SIGHUP and POST /v1/policy/reload)")
def serve(host, port, database_url, policy_dir, workers, threads, dev, policy_poll):
    """Serve the HTTP API under gunicorn (production) or, with --dev, Flask's own server."""
    import os
    import shutil
    import tempfile

    chosen = settings(database=database_url, policy_dir=policy_dir)
    if not dev:
        from audience_authz.http.server import prepare_metrics_dir

        # the workers' shared metrics: before prometheus_client is imported
        prepare_metrics_dir(chosen.prometheus_multiproc_dir)
    from audience_authz.engine.policy import PolicyError
    from audience_authz.http import logs
    from audience_authz.http.app import create_app, generated_token
    from audience_authz.policytools.reload import Reloader, Snapshots
    from audience_authz.store import db

    logs.configure(chosen.log_level)
    if not chosen.token_list:
        token = generated_token()
        chosen = chosen.model_copy(update={"tokens": token})
        click.echo(f"AUDIENCE_AUTHZ_TOKENS is not set; this server's token is: {token}", err=True)
    policy_dir = chosen.policy_dir
    # Vet the policy before forking, and keep it as the workers' last good snapshot.
    master = os.getpid()
    snapshots = Snapshots(tempfile.mkdtemp(prefix="audience-authz-policy-"))
    try:
        policy = Reloader(policy_dir, snapshots).initial().policy
    except PolicyError as exc:
        shutil.rmtree(snapshots.root, ignore_errors=True)
        for file, line, message in exc.problems:
            click.echo(f"{file}:{line}: {message}", err=True)
        click.echo("the policy fails `policy check` or its tests; not serving it", err=True)
        sys.exit(1)
    _init_database(chosen.database)  # create or check the schema once, before the workers start
    db.close()
    logging.getLogger("audience_authz").info(
        f"serving on http://{host}:{port} with {'Flask (development)' if dev else f'gunicorn, {workers} worker(s)'}"
        f" (policy {policy.version})")
    app_kwargs = {"settings": chosen, "policy_snapshots": str(snapshots.root), "policy_poll": policy_poll}
    try:
        if dev:
            create_app(**app_kwargs).run(host=host, port=port, threaded=True, use_reloader=False)
        else:
            from audience_authz.http.server import run

            run(app_kwargs, host=host, port=port, workers=workers, threads=threads, log_level=chosen.log_level,
                header_timeout=chosen.header_timeout_s, max_body=chosen.max_body)
    finally:
        if os.getpid() == master:  # gunicorn's workers leave through this frame too
            shutil.rmtree(snapshots.root, ignore_errors=True)


def _init_database(database_url):
    """Bind the database; a schema behind this release's migrations is refused."""
    from audience_authz.store import db
    from audience_authz.store.migrations import SchemaBehind

    try:
        return db.init(_database_url(database_url))
    except SchemaBehind as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.option("--database", "database_url", default=None, help=DATABASE_HELP)
def demo(database_url):
    """Load the source's scenario (one BC, owner, recipients, audiences A B C, ad groups)."""
    from audience_authz.store import db
    from audience_authz import demo as scenario
    from audience_authz.engine.authorizer import Authorizer
    from audience_authz.engine.policy import Policy

    _init_database(database_url)
    with click.progressbar(length=len(scenario.records()), label="loading the demo data",
                           file=sys.stderr) as bar:
        done = scenario.load(Authorizer(Policy.load(_policy_dir(None))), on_line=lambda: bar.update(1))
    db.close()
    if not done:
        click.echo("demo data is already loaded")
    for line in done:
        click.echo(f"loaded {line}")


@main.command(name="import")
@click.argument("file", type=click.File("r", encoding="utf-8"))
@click.option("--database", "database_url", default=None, help=DATABASE_HELP)
@click.option("--policy-dir", default=None, help=POLICY_HELP,
              type=click.Path(exists=True, file_okay=False))
def import_(file, database_url, policy_dir):
    """Load entities and shares in bulk from FILE (JSON Lines, '-' for stdin), each line
    through the same actions and policy as the API. Exit status 1 when any line was
    invalid, failed or denied (they are listed; the other lines are applied)."""
    from audience_authz import bulk
    from audience_authz.store import db
    from audience_authz.engine.authorizer import Authorizer
    from audience_authz.engine.policy import Policy

    authz = Authorizer(Policy.load(_policy_dir(policy_dir)))
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
    from audience_authz.store import db
    from audience_authz.store import migrations

    database = db.init(_database_url(database_url), create=False)
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
    """Policy authoring tools: check, test, matrix, diff."""


@policy.command()
@click.argument("policy_dir", required=False, type=click.Path(exists=True, file_okay=False))
def check(policy_dir):
    """Validate the policy files; report each problem with file and line."""
    from audience_authz.policytools.check import check_policy

    problems = check_policy(_policy_dir(policy_dir))
    for file, line, message in problems:
        click.echo(f"{file}:{line}: {message}")
    if problems:
        click.echo(f"{len(problems)} problem(s)", err=True)
        sys.exit(1)
    click.echo("policy OK")


def _load_policy_or_exit(policy_dir):
    from audience_authz.engine.policy import Policy, PolicyError

    try:
        return Policy.load(_policy_dir(policy_dir))
    except PolicyError as exc:
        for file, line, message in exc.problems:
            click.echo(f"{file}:{line}: {message}")
        click.echo("the policy does not load; run `audience-authz policy check`", err=True)
        sys.exit(1)


@policy.command("test")
@click.argument("tests", required=False, type=click.Path(exists=True))
@click.option("--policy-dir", default=None,
              type=click.Path(exists=True, file_okay=False), help="the policy to test (e.g. a candidate); " + POLICY_HELP)
@click.option("--coverage/--no-coverage", default=True, show_default=True,
              help="also fail when a policy line, deny reason code, matrix cell or account action is untested")
@click.option("-q", "--quiet", is_flag=True, help="report only failures, errors and gaps")
def test_policy(tests, policy_dir, coverage, quiet):
    """Run the policy unit tests (TESTS: a YAML file or directory; default POLICY_DIR/tests)."""

    from audience_authz.policytools.cases import run_suite

    policy = _load_policy_or_exit(policy_dir)
    report = run_suite(policy, tests or policy.directory / "tests", coverage=coverage)
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
    click.echo(summary)
    sys.exit(0 if report.ok else 1)


@policy.command()
@click.option("--policy-dir", default=None, help=POLICY_HELP,
              type=click.Path(exists=True, file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["markdown", "html"]), default="markdown", show_default=True)
@click.option("-o", "--output", type=click.File("w"), default="-", help="write here instead of standard output")
def matrix(policy_dir, fmt, output):
    """Print the owner/recipient table and the sharing rules, derived from the policy itself."""
    from audience_authz.policytools import matrix as policymatrix

    policy = _load_policy_or_exit(policy_dir)
    output.write(policymatrix.markdown(policy) if fmt == "markdown" else policymatrix.html_page(policy))


@policy.command()
@click.option("--candidate", "candidate_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="the policy directory to try")
@click.option("--database", "database_url", default=None, help=DATABASE_HELP)
@click.option("--last", type=click.IntRange(1), default=None, help="replay the newest N decisions")
@click.option("--since", default=None, help="replay decisions at or after this ISO 8601 time (UTC if no offset)")
@click.option("--baseline", "baseline_dir", default=None,
              type=click.Path(exists=True, file_okay=False),
              help="the policy the log was decided by, to compare allow reasons and effects")
@click.option("--examples", default=3, show_default=True, type=click.IntRange(0, 100), help="examples per change")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--fail-on-change", is_flag=True, help="exit 1 when any decision would change")
def diff(candidate_dir, database_url, last, since, baseline_dir, examples, fmt, fail_on_change):
    """Replay the stored decision log against a candidate policy; report what would change."""
    import json

    from audience_authz.store import db
    from audience_authz.policytools import diff as policydiff
    from audience_authz.policytools.check import check_policy

    problems = check_policy(candidate_dir)
    if problems:
        for file, line, message in problems:
            click.echo(f"{file}:{line}: {message}")
        click.echo("the candidate fails `policy check`; fix it first", err=True)
        sys.exit(2)
    candidate = _load_policy_or_exit(candidate_dir)
    baseline = _load_policy_or_exit(baseline_dir)
    try:
        since_at = policydiff.parse_since(since) if since else None
    except ValueError as exc:
        raise click.BadParameter(f"not an ISO 8601 time UTC can hold: {since!r} ({exc})", param_hint="--since") from None
    db.init(_database_url(database_url), create=False)
    try:
        query = policydiff.select(last, since_at)
        with click.progressbar(query.iterator(), length=query.count(), label="replaying decisions",
                               file=sys.stderr, hidden=not sys.stderr.isatty()) as rows:
            report = policydiff.replay(rows, candidate, baseline, examples)
    except Exception as exc:  # noqa: BLE001 - e.g. no decision_log table at that URL
        click.echo(f"cannot read the decision log: {exc}", err=True)
        sys.exit(2)
    finally:
        db.close()
    if fmt == "json":
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        click.echo(policydiff.text(report, candidate_dir), nl=False)
    sys.exit(1 if fail_on_change and report.changed else 0)

"""The ``audience-authz`` command: serve, demo, policy tools."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

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


class _Main(click.Group):
    """Ends a command that cannot run with the installed pycasbin with one line saying why."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except RuntimeError as exc:
            from audience_authz.engine.policy import PycasbinMismatch  # imported late: it loads pycasbin

            if isinstance(exc, PycasbinMismatch):
                raise click.ClickException(str(exc)) from None
            raise


@click.group(cls=_Main)
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
@click.option("--shadow-policy-dir", default=None, type=click.Path(exists=True, file_okay=False),
              help="a candidate policy that decides every request too, changing no answer"
                   " (GET /v1/policy/shadow; default: AUDIENCE_AUTHZ_SHADOW_POLICY_DIR)")
def serve(host, port, database_url, policy_dir, workers, threads, dev, policy_poll, shadow_policy_dir):
    """Serve the HTTP API under gunicorn (production) or, with --dev, Flask's own server."""
    import os
    import shutil
    import tempfile

    chosen = settings(database=database_url, policy_dir=policy_dir, shadow_policy_dir=shadow_policy_dir)
    if not dev:
        from audience_authz.http.server import prepare_metrics_dir

        # the workers' shared metrics: before prometheus_client is imported
        prepare_metrics_dir(chosen.prometheus_multiproc_dir)
    from audience_authz.engine.policy import PolicyError, check_pycasbin
    from audience_authz.http import logs
    from audience_authz.http.app import create_app, generated_token
    from audience_authz.policytools.reload import Reloader, Snapshots
    from audience_authz.store import db

    logs.configure(chosen.log_level)
    check_pycasbin()  # before anything is made: this pycasbin may decide nothing
    from audience_authz.http import tracing

    try:
        tracing.check_available(chosen)  # configured tracing needs the [tracing] extra
    except tracing.TracingUnavailable as exc:
        raise click.ClickException(str(exc)) from None
    if not chosen.token_list:
        token = generated_token()
        chosen = chosen.model_copy(update={"tokens": token})
        os.environ["AUDIENCE_AUTHZ_TOKENS"] = token  # a master started by USR2 keeps it
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
    if chosen.shadow_policy_dir is not None:
        from audience_authz.policytools.check import check_policy

        problems = check_policy(chosen.shadow_policy_dir)
        if problems:
            shutil.rmtree(snapshots.root, ignore_errors=True)
            for problem in problems:
                click.echo(f"{chosen.shadow_policy_dir}/{problem}", err=True)
            click.echo("the shadow policy fails `policy check`; not serving", err=True)
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
                drain_seconds=chosen.drain_seconds, header_timeout=chosen.header_timeout_s, max_body=chosen.max_body,
                max_subscribers=chosen.max_subscribers)
    finally:
        if os.getpid() == master:  # gunicorn's workers leave through this frame too
            shutil.rmtree(snapshots.root, ignore_errors=True)


def _init_database(database_url, create=True, must_exist=False):
    """Bind the database; a schema behind this release's migrations, an unknown kind of
    URL or a missing driver is a one-line error, not a traceback. With ``must_exist`` a
    SQLite file that is not there is an error too (instead of a new, empty database)."""
    from audience_authz.store import db
    from audience_authz.store.migrations import SchemaBehind

    url = _database_url(database_url)
    path = db.sqlite_path(url)
    if must_exist and path is not None and not Path(path).is_file():
        missing = click.ClickException(f"no database at {path}: give the server's with --database or "
                                       "AUDIENCE_AUTHZ_DATABASE (this command never creates one)")
        missing.exit_code = 2
        raise missing
    try:
        return db.init(url, create=create)
    except (SchemaBehind, db.DatabaseUrlError) as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.option("--database", "database_url", default=None, help=DATABASE_HELP)
def demo(database_url):
    """Load the source's scenario (one BC, owner, recipients, audiences A B C, ad groups)."""
    from audience_authz import demo as scenario
    from audience_authz.engine.authorizer import Authorizer
    from audience_authz.engine.policy import Policy
    from audience_authz.store import db

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
    from audience_authz.engine.authorizer import Authorizer
    from audience_authz.engine.policy import Policy
    from audience_authz.store import db

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
    from audience_authz.store import db, migrations

    database = _init_database(database_url, create=False)
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


@main.command()
@click.option("--database", "database_url", default=None, help=DATABASE_HELP)
@click.option("--nats", "nats_url", default=None, help="the NATS server (default: AUDIENCE_AUTHZ_RELAY_NATS,"
              " else nats://127.0.0.1:4222)")
@click.option("--stream", default=None, help="the JetStream stream (default: AUDIENCE_AUTHZ_RELAY_STREAM)")
@click.option("--subject-prefix", default=None, help="subjects are <prefix>.<event type>.<account>"
              " (default: AUDIENCE_AUTHZ_RELAY_SUBJECT_PREFIX)")
@click.option("--metrics-port", default=None, type=click.IntRange(0, 65535),
              help="serve the relay's Prometheus metrics at :PORT/metrics (default: AUDIENCE_AUTHZ_RELAY_METRICS_PORT;"
                   " 0: none)")
def relay(database_url, nats_url, stream, subject_prefix, metrics_port):
    """Publish the committed events to NATS JetStream, exactly once and in commit order
    (docs/events.md). Run as many as you like; SIGTERM or Ctrl-C stops it between rounds."""
    import asyncio
    import signal

    from audience_authz.relay.loop import relay as run_relay
    from audience_authz.relay.publisher import BrokerError, JetStreamPublisher
    from audience_authz.store import db

    options = settings(database=database_url, relay_nats=nats_url, relay_stream=stream,
                       relay_subject_prefix=subject_prefix, relay_metrics_port=metrics_port)
    logging.basicConfig(level=options.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    _init_database(options.database, create=False, must_exist=True)
    if options.relay_metrics_port:
        from prometheus_client import start_http_server

        start_http_server(options.relay_metrics_port, addr="127.0.0.1")
    publisher = JetStreamPublisher(options.relay_nats, options.relay_stream, options.relay_subject_prefix)

    async def main_loop():
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(signum, stop.set)
        try:
            await publisher.connect()
        except BrokerError as exc:
            raise click.ClickException(f"cannot reach NATS JetStream at {options.relay_nats}: {exc}") from None
        try:
            await run_relay(publisher, batch=options.relay_batch, poll_s=options.relay_poll_s, stop=stop)
        finally:
            await publisher.close()

    try:
        asyncio.run(main_loop())
    finally:
        db.close()


@main.group()
def policy():
    """Policy authoring tools: check, test, verify, matrix, diff."""


JUNIT_HELP = "also write the results as JUnit XML to FILE (for CI)"


def _problem_cases(problems, classname: str, passed: str):
    """JUnit cases of ``problems`` (one failed case each), or one passing case."""
    from audience_authz.policytools import junit

    if not problems:
        return [junit.Case(passed, classname)]
    return [junit.Case(f"{file}:{line}", classname, "fail", message, file, line) for file, line, message in problems]


_POLICY_DIR_OPTION = click.option("--policy-dir", default=None, type=click.Path(exists=True, file_okay=False),
                                  help=POLICY_HELP)


@policy.command()
@_POLICY_DIR_OPTION
@click.argument("old_policy_dir", metavar="[DIR]", required=False,
                type=click.Path(exists=True, file_okay=False))
@click.option("--junit", "junit_file", default=None, type=click.Path(dir_okay=False), help=JUNIT_HELP)
@click.option("--published-dir", default=None, type=click.Path(exists=True, file_okay=False),
              help="the policy whose reason codes are published (default: the policy directory's files at"
                   " --published-rev)")
@click.option("--published-rev", default="HEAD", show_default=True,
              help="the git revision whose reasons.yaml holds the published codes (none outside a git work tree)")
def check(policy_dir, old_policy_dir, junit_file, published_dir, published_rev):
    """Validate the policy files, and the contract between them and the code; report each
    problem with file, line and column. A reason code once published (at --published-rev,
    or in --published-dir) may not be renamed or removed unless reasons.yaml retires it.
    (DIR, the policy directory as an argument, is deprecated: use --policy-dir.)"""
    from audience_authz.policytools import junit, published
    from audience_authz.policytools.check import check_policy

    if old_policy_dir is not None:
        if policy_dir is not None and Path(policy_dir).resolve() != Path(old_policy_dir).resolve():
            raise click.UsageError("give the policy directory once, as --policy-dir")
        click.echo("note: `policy check DIR` is deprecated; use `policy check --policy-dir DIR`", err=True)
        policy_dir = old_policy_dir
    directory = _policy_dir(policy_dir)
    try:
        baseline = (published.of_directory(published_dir) if published_dir
                    else published.at_revision(directory, published_rev))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--published-rev") from None
    where = published_dir or f"git {published_rev}"
    problems = (published.dropped(baseline, directory, where) if baseline else []) + check_policy(directory)
    for problem in problems:
        click.echo(str(problem))  # file:line:column: message
    if junit_file:
        junit.write(junit_file, "policy check", _problem_cases(problems, "policy.check", "policy check"))
    if problems:
        click.echo(f"{len(problems)} problem(s)", err=True)
        sys.exit(1)
    click.echo("policy OK")


def _contract_or_exit(policy_dir, junit_file=None, suite=""):
    """Exit 1 when the policy breaks the contract with the code (contract.py)."""
    from audience_authz.policytools import junit
    from audience_authz.policytools.check import contract_problems
    from audience_authz.policytools.messages import located

    problems = located(_policy_dir(policy_dir), contract_problems(_policy_dir(policy_dir)))
    if problems:
        for problem in problems:
            click.echo(str(problem))  # file:line:column: message
        if junit_file:
            junit.write(junit_file, suite, _problem_cases(problems, "policy.contract", "contract"))
        click.echo("the policy breaks the contract with the code; run `audience-authz policy check`", err=True)
        sys.exit(1)


def _retired_text(retired: list[dict]) -> str:
    """The reason codes a candidate retires, for the top of a diff: a caller matching on one
    must move to its replacement (or stop expecting it)."""
    lines = [f"Reason codes retired: {len(retired)} (callers matching on them must change)."]
    for entry in retired:
        lines.append(f"  {entry['code']} -> " + (entry["replaced_by"] or "(deprecated, no replacement)"))
    return "\n".join(lines) + "\n"


def _load_policy_or_exit(policy_dir):
    from audience_authz.engine.policy import Policy, PolicyError
    from audience_authz.policytools.messages import located

    try:
        return Policy.load(_policy_dir(policy_dir))
    except PolicyError as exc:
        for problem in located(_policy_dir(policy_dir), exc.problems):
            click.echo(str(problem))
        click.echo("the policy does not load; run `audience-authz policy check`", err=True)
        sys.exit(1)


@policy.command("test")
@click.argument("tests", required=False, type=click.Path(exists=True))
@click.option("--policy-dir", default=None,
              type=click.Path(exists=True, file_okay=False), help="the policy to test (e.g. a candidate); " + POLICY_HELP)
@click.option("--coverage/--no-coverage", default=True, show_default=True,
              help="also fail when a policy line, deny reason code, matrix cell or account action is untested")
@click.option("-q", "--quiet", is_flag=True, help="report only failures, errors and gaps")
@click.option("--junit", "junit_file", default=None, type=click.Path(dir_okay=False), help=JUNIT_HELP)
def test_policy(tests, policy_dir, coverage, quiet, junit_file):
    """Run the policy unit tests of --policy-dir (TESTS: a YAML file or a directory of them;
    default: the policy directory's tests/)."""
    from audience_authz.policytools import junit
    from audience_authz.policytools.cases import run_suite
    from audience_authz.policytools.messages import policy_condition_problems

    if tests is not None and (Path(tests) / "policy.csv").is_file():
        raise click.BadParameter(
            f"{tests} is a policy directory, not test files: to test that policy give --policy-dir {tests}",
            param_hint="TESTS")
    _contract_or_exit(policy_dir, junit_file, "policy test")
    policy = _load_policy_or_exit(policy_dir)
    broken = policy_condition_problems(policy)  # the cause, before any case it would fail
    if broken:
        for problem in broken:
            click.echo(str(problem))
        click.echo("the policy's conditions have errors; no case was run (see `audience-authz policy check`)", err=True)
        sys.exit(1)
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
    if junit_file:
        cases = [junit.Case(r.case.name, f"policy.tests.{Path(r.case.file).stem}", r.status,
                            "; ".join(r.messages), f"tests/{r.case.file}", r.case.line) for r in report.results]
        cases += [junit.Case(gap, "policy.coverage", "fail", f"untested: {gap}") for gap in report.gaps]
        junit.write(junit_file, "policy test", cases)
    sys.exit(0 if report.ok else 1)


@policy.command()
@click.option("--policy-dir", default=None, help=POLICY_HELP, type=click.Path(exists=True, file_okay=False))
@click.option("--properties", "properties_file", default=None, type=click.Path(exists=True, dir_okay=False),
              help="the properties to prove (default: POLICY_DIR/properties.yaml)")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--junit", "junit_file", default=None, type=click.Path(dir_okay=False), help=JUNIT_HELP)
def verify(policy_dir, properties_file, fmt, junit_file):
    """Prove the policy's properties for every request the service can make (z3); print a
    counterexample (relation, action, facts, deciding line) for each that fails."""
    import json

    from audience_authz.policytools import junit
    from audience_authz.policytools import verify as verifier
    from audience_authz.policytools.check import check_policy

    problems = check_policy(_policy_dir(policy_dir))  # the contract, and conditions that compile
    if problems:
        for problem in problems:
            click.echo(str(problem))  # file:line:column: message
        if junit_file:
            junit.write(junit_file, "policy verify", _problem_cases(problems, "policy.check", "policy check"))
        click.echo("the policy fails `policy check`; fix it first", err=True)
        sys.exit(1)
    policy = _load_policy_or_exit(policy_dir)
    report = verifier.run(policy, properties_file)
    if fmt == "json":
        click.echo(json.dumps({"policy_version": policy.version, "ok": report.ok,
                               "problems": [{"file": f, "line": n, "message": m} for f, n, m in report.problems],
                               "properties": [r.as_dict() for r in report.results]}, indent=2))
    else:
        for file, line, message in report.problems:
            click.echo(f"{file}:{line}: {message}")
        labels = {"proven": click.style("proven", fg="green"), "failed": click.style("FAILED", fg="red"),
                  "error": click.style("ERROR ", fg="red", bold=True)}
        for r in report.results:
            click.echo(f"{labels[r.status]} {r.prop.where}  {r.prop.name} ({r.pairs} (relation, action) pairs)")
            if r.status != "proven":
                click.echo(f"        {r.prop.message}")
                click.echo(f"        {verifier.describe(r.counterexample) if r.counterexample else r.error}")
        counts = {s: sum(r.status == s for r in report.results) for s in ("proven", "failed", "error")}
        click.echo(f"{counts['proven']} proven, {counts['failed']} failed, {counts['error']} errors"
                   f"{f', {len(report.problems)} problems' if report.problems else ''} (policy {policy.version})")
    if junit_file:
        cases = _problem_cases(report.problems, "policy.properties", "") if report.problems else []
        cases += [junit.Case(r.prop.name, "policy.properties", "pass" if r.status == "proven" else
                             ("fail" if r.status == "failed" else "error"),
                             "" if r.status == "proven" else f"{r.prop.message} "
                             + (verifier.describe(r.counterexample) if r.counterexample else r.error),
                             verifier.PROPERTIES_FILE, r.prop.line) for r in report.results]
        junit.write(junit_file, "policy verify", cases)
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
@click.option("--candidate", "candidate_dir", default=None, type=click.Path(exists=True, file_okay=False),
              help="the policy directory to try")
@click.option("--database", "database_url", default=None, help=DATABASE_HELP)
@click.option("--last", type=click.IntRange(1), default=None, help="replay the newest N decisions")
@click.option("--since", default=None, help="replay decisions at or after this ISO 8601 time (UTC if no offset)")
@click.option("--policy-dir", "--baseline", "baseline_dir", default=None,
              type=click.Path(exists=True, file_okay=False),
              help="the policy in force, that the log was decided by (--baseline: its old name); " + POLICY_HELP)
@click.option("--examples", default=3, show_default=True, type=click.IntRange(0, 100), help="examples per change")
@click.option("--only-version", default=None, metavar="VERSION|all",
              help="replay only the decisions made by this policy version (default: the version in force, "
                   "that of --policy-dir); all: every decision")
@click.option("--current-state", is_flag=True,
              help="instead of the log, check the active shares: which the candidate would not keep "
                   "(keep_share) or allow now (share), and the ad groups ending them would pause, broaden "
                   "or disconnect")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--fail-on-change", is_flag=True, help="exit 1 when any decision (or active share) would change")
@click.option("--symbolic", is_flag=True,
              help="also every region of requests (past or not) whose answer changes, proven with z3,"
                   " each with the past requests that fall in it")
@click.option("--baseline-rev", default=None, help="the baseline is the policy at this git revision (with --git-path)")
@click.option("--candidate-rev", default=None, help="the candidate is the policy at this git revision (with --git-path)")
@click.option("--git-path", default="policy", show_default=True, help="the policy directory inside the git repository")
@click.option("--no-replay", is_flag=True, help="do not read the decision log (with --symbolic)")
def diff(candidate_dir, database_url, last, since, baseline_dir, examples, only_version, current_state, fmt,
         fail_on_change, symbolic, baseline_rev, candidate_rev, git_path, no_replay):
    """Replay the stored decision log against a candidate policy; report what would change
    (with --symbolic: every request whose answer would change, past or not; with
    --current-state: the active shares the candidate would end)."""
    import json
    import tempfile

    from audience_authz.policytools import diff as policydiff
    from audience_authz.policytools import published, standing, symdiff
    from audience_authz.policytools.check import check_policy
    from audience_authz.store import db

    workdir = Path(tempfile.mkdtemp(prefix="audience-authz-diff-"))
    try:
        for rev, name in ((baseline_rev, "baseline"), (candidate_rev, "candidate")):
            if rev is not None:
                try:
                    symdiff.policy_at_revision(rev, git_path, workdir / name)
                except ValueError as exc:
                    raise click.BadParameter(str(exc), param_hint=f"--{name}-rev") from None
        candidate_dir = str(workdir / "candidate") if candidate_rev else candidate_dir
        baseline_dir = str(workdir / "baseline") if baseline_rev else baseline_dir
        if candidate_dir is None:
            raise click.UsageError("give --candidate DIR or --candidate-rev REV")
        for label, directory in (("candidate", candidate_dir), ("baseline", baseline_dir)):
            if directory is None:
                continue
            problems = check_policy(directory)
            if problems:
                for problem in problems:
                    click.echo(str(problem))  # file:line:column: message
                click.echo(f"the {label} fails `policy check`; fix it first", err=True)
                sys.exit(2)
        # reason codes first: one the policy in force published may be retired, never dropped
        in_force = published.of_directory(_policy_dir(baseline_dir))
        gone = published.dropped(in_force, candidate_dir, "by the policy in force")
        if gone:
            for problem in gone:
                click.echo(str(problem))
            click.echo("the candidate renames or removes a published reason code; retire it in reasons.yaml", err=True)
            sys.exit(2)
        retired = published.retirements(in_force, published.of_directory(candidate_dir))
        if retired and fmt == "text":
            click.echo(_retired_text(retired))
        candidate = _load_policy_or_exit(candidate_dir)
        baseline = _load_policy_or_exit(baseline_dir)
        try:
            since_at = policydiff.parse_since(since) if since else None
        except (ValueError, OverflowError) as exc:
            raise click.BadParameter(f"not an ISO 8601 time UTC can hold: {since!r} ({exc})",
                                     param_hint="--since") from None
        if current_state:
            _init_database(database_url, create=False, must_exist=True)  # never makes a database
            try:
                state = standing.check(candidate)
            except Exception as exc:  # noqa: BLE001 - e.g. no tables at that URL
                click.echo(f"cannot read the current state: {exc}", err=True)
                sys.exit(2)
            finally:
                db.close()
            click.echo(json.dumps({"retired_codes": retired, **state}, indent=2) if fmt == "json"
                       else standing.text(state, candidate_dir),
                       nl=fmt == "json")
            sys.exit(1 if fail_on_change and state["shares"] else 0)
        symbolic_report = symdiff.symbolic_diff(baseline, candidate) if symbolic else None
        report = None
        if not (symbolic and no_replay):
            _init_database(database_url, create=False, must_exist=True)  # never makes a database
            version = None if only_version == "all" else (only_version or baseline.version)
            try:
                query = policydiff.select(last, since_at, version)
                with click.progressbar(query.iterator(), length=query.count(), label="replaying decisions",
                                       file=sys.stderr, hidden=not sys.stderr.isatty()) as rows:
                    report = policydiff.replay(rows, candidate, baseline, examples)
                report.only_version = version
                if version is not None:
                    left_out = policydiff.select(last, since_at).count() - query.count() if last is None else None
                    if left_out:
                        report.notes.append(f"{left_out} decision(s) made by other policy versions were left out "
                                            "(--only-version all replays them)")
                if symbolic_report is not None:
                    symdiff.count_replayed(symbolic_report, policydiff.select(last, since_at).iterator(),
                                           baseline, candidate, examples)
            except Exception as exc:  # noqa: BLE001 - e.g. no decision_log table at that URL
                click.echo(f"cannot read the decision log: {exc}", err=True)
                if symbolic_report is None:
                    sys.exit(2)
            finally:
                db.close()
    finally:
        import shutil
        shutil.rmtree(workdir, ignore_errors=True)
    if fmt == "json":
        body = {"retired_codes": retired, **(report.as_dict() if report is not None else {})}
        if symbolic_report is not None:
            body["symbolic"] = symbolic_report.as_dict()
        click.echo(json.dumps(body, indent=2))
    else:
        if symbolic_report is not None:
            defaults = {name: getattr(candidate.facts(), name) for name in candidate.facts_schema}
            click.echo(symdiff.text(symbolic_report, defaults), nl=report is not None)
        if report is not None:
            click.echo(policydiff.text(report, candidate_dir), nl=False)
    changed = (report is not None and report.changed) or (symbolic_report is not None and symbolic_report.regions)
    sys.exit(1 if fail_on_change and changed else 0)

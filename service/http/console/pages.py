"""The console's pages: Rules, Matrix, Try, Decisions, Candidate, Events (docs/console.md).

Every answer comes from the parts the API uses: the Authorizer decides (with its
explanation), policytools check, run the cases, derive the matrix and replay the log, the
reloader reloads. These views only read the request, call them and render the result.
"""

from __future__ import annotations

import datetime
import json
import shutil
import tempfile
from pathlib import Path

from flask import abort, current_app, redirect, render_template, request, url_for
from markupsafe import Markup, escape
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from audience_authz.engine.authorizer import Authorizer
from audience_authz.engine.facts import Request
from audience_authz.engine.policy import Policy, PolicyError
from audience_authz.exceptions import ApiError
from audience_authz.http.console import access, bp, policyview, queries
from audience_authz.http.policy_routes import _shadow_summary as shadow_summary
from audience_authz.http.schemas import AuthorizeBody
from audience_authz.policytools import diff as policydiff
from audience_authz.policytools import impact, sandbox
from audience_authz.store import budget
from audience_authz.vocabulary import ACTIONS, AUDIENCE_ACTIONS, POLICY_FILES

REPLAY_DEFAULT, REPLAY_MAX = 1000, 100_000
ID_MAX = 2**63 - 1  # the largest row id (a signed 64-bit integer): a cursor or key past it is a 400
_CONTROL = frozenset(chr(c) for c in (*range(32), 127))
_FORM_CONTROL = frozenset({"\x00"})  # a form's text (policy files, facts) may hold tabs and newlines


def _authz() -> Authorizer:
    return current_app.extensions["authz"]


@bp.app_template_filter("ticks")
def ticks(text: str) -> Markup:
    """`code` in the matrix's texts as <code>code</code>."""
    parts = str(escape(text)).split("`")
    return Markup("".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts)))


@bp.errorhandler(HTTPException)
def http_error(exc: HTTPException):
    retry = getattr(exc, "retry_after", None)
    headers = {"Retry-After": str(retry)} if retry else {}
    return render_template("error.html", title=exc.name, message=exc.description), exc.code or 500, headers


@bp.before_request
def _refuse_control_characters():
    """NUL (which PostgreSQL refuses in text) and other control characters in a query or path
    parameter, or NUL in a form field: a 400 with the error page, before any page reads them."""
    view_args = {k: v for k, v in (request.view_args or {}).items() if isinstance(v, str)}
    for where, pairs, refused in (("query parameter", request.args.items(multi=True), _CONTROL),
                                  ("path", view_args.items(), _CONTROL),
                                  ("form field", request.form.items(multi=True), _FORM_CONTROL)):
        for name, value in pairs:
            if not refused.isdisjoint(name) or not refused.isdisjoint(value):
                abort(400, f"the {where} {name[:40]!r} holds a control character")


def _id_arg(name: str) -> int | None:
    """An integer query parameter (a cursor, a line): None when absent or not a number, a 400
    when out of the 64-bit range that row ids have."""
    value = request.args.get(name, type=int)
    if value is not None and not 0 <= value <= ID_MAX:
        abort(400, f"{name}: must be between 0 and {ID_MAX}")
    return value


@bp.get("")
@bp.get("/")
def home():
    return redirect(url_for("console.rules"))


@bp.route("/<path:rest>", methods=["GET", "POST"])
def not_found(rest: str):
    return render_template("error.html", title="Not found", message=f"the console has no page {rest[:100]!r}"), 404


# -- Rules and Matrix ---------------------------------------------------------------------

@bp.get("/rules")
def rules():
    view = policyview.of(_authz().policy)
    return render_template("rules.html", title="Rules", view=view, highlight=_id_arg("line"),
                           policy_dir=_policy_dir())


@bp.get("/matrix")
def matrix():
    view = policyview.of(_authz().policy)
    tables = [{"title": t.title, "intro": t.intro, "headers": t.headers,
               "rows": [[policyview.cell(c) for c in row] for row in t.rows]} for t in view.tables]
    return render_template("matrix.html", title="Matrix", tables=tables)


# -- Try a decision -----------------------------------------------------------------------

@bp.route("/try", methods=["GET", "POST"])
def try_decision():
    form = {k: (request.values.get(k) or "").strip()
            for k in ("account", "action", "audience", "target", "ad_group")}
    result, error = None, None
    if request.method == "POST":
        try:
            body = AuthorizeBody.model_validate({
                "principal": {"account_id": form["account"]}, "action": form["action"],
                "resource": {"audience_id": form["audience"]},
                "context": {"target_account_id": form["target"] or None, "ad_group_id": form["ad_group"] or None},
                "explain": True})
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            error = f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
        else:  # as POST /v1/authorize with "explain": true does (and logged as it is), its limits too
            access.require("decide")
            access.spend()
            try:
                with budget.limited(current_app.config["SETTINGS"].max_request_cost):
                    outcome = _authz().check(Request(body.principal.account_id, body.action,
                                                     body.resource.audience_id,
                                                     target_account_id=body.context.target_account_id,
                                                     ad_group_id=body.context.ad_group_id), explain=True)
            except budget.TooCostly as exc:
                abort(422, exc.message)
            result = outcome.answer()
    policy = _authz().policy
    view = policyview.of(policy)
    line = ((result.get("explanation") or {}).get("matched_rule") or {}).get("line") if result else None
    return render_template("try.html", title="Try a decision", form=form, actions=AUDIENCE_ACTIONS, result=result,
                           error=error, view=view, highlight=line), 400 if error else 200


@bp.get("/pick")
def pick():
    """<option>s for the Try form's pickers (an htmx fragment)."""
    field = request.args.get("field", "")
    prefix = (request.args.get(field) or "").strip()[:128]
    account = (request.args.get("account") or "").strip()[:128]
    if field in ("account", "target"):
        options = queries.pick_accounts(prefix)
    elif field == "audience":
        options = queries.pick_audiences(account, prefix)
    elif field == "ad_group":
        options = queries.pick_ad_groups(account, prefix)
    else:
        options = []
    return render_template("options.html", options=options)


# -- Decisions ----------------------------------------------------------------------------

def _time(name: str, problems: list[str]) -> datetime.datetime | None:
    text = (request.args.get(name) or "").strip()
    if not text:
        return None
    try:
        return policydiff.parse_since(text)
    except ValueError:
        problems.append(f"{name}: not an ISO 8601 time ({text[:40]!r})")
        return None


@bp.get("/decisions")
def decisions():
    problems: list[str] = []
    args = {k: (request.args.get(k) or "").strip()[:128] for k in ("account", "audience", "action", "decision",
                                                                    "reason")}
    filters = queries.Filters(**args, since=_time("since", problems), until=_time("until", problems))
    if filters.decision not in ("", "allow", "deny"):
        problems.append("decision: allow or deny")
        filters.decision = ""
    before = _id_arg("before")
    policy = _authz().policy
    allow_lines = [r.line for r in policy.rules if r.eft == "allow" and r.reason == filters.reason] or None
    page = queries.decisions(filters, before, allow_lines, policy.version)
    reasons = sorted({*policy.reasons, *(r.reason for r in policy.rules)})
    query = {k: v for k, v in request.args.items() if k != "before" and v}
    return render_template("decisions.html", title="Decisions", page=page, filters=args,
                           since=request.args.get("since", ""), until=request.args.get("until", ""), actions=ACTIONS,
                           reasons=reasons, problems=problems, query=query, scan=queries.SCAN,
                           before=before), 400 if problems else 200


@bp.get("/decisions/<int:key>")
def decision(key: int):
    if key > ID_MAX:
        abort(400, f"no decision has an id past {ID_MAX}")
    row = queries.decision(key)
    if row is None:
        return render_template("error.html", title="Not found", message=f"no decision {key} in the log"), 404
    policy = _authz().policy
    rule, source = None, None
    if row.rule_line is not None:
        if row.policy_version == policy.version:
            rule, source = next((r for r in policy.rules if r.line == row.rule_line), None), "serving"
        else:  # an earlier version: its vetted snapshot, when this server still keeps it
            old = _snapshot(row.policy_version)
            if old is not None:
                rule, source = next((r for r in old.rules if r.line == row.rule_line), None), "snapshot"
    return render_template("decision.html", title=f"Decision {row.id}", row=row, facts=json.loads(row.facts),
                           resource=json.loads(row.resource), reasons=json.loads(row.reasons), rule=rule, source=source)


@bp.get("/decisions/id/<decision_id>")
def decision_by_id(decision_id: str):
    """A decision by the id its answer gave (the unique index on decision_id)."""
    found = queries.decisions_by_id({decision_id[:64]}).get(decision_id)
    if found is None:
        return render_template("error.html", title="Not found",
                               message=f"no decision {decision_id[:64]!r} in the log (yet)"), 404
    return redirect(url_for("console.decision", key=found.id))


def _snapshot(version: str) -> Policy | None:
    reloader = current_app.extensions.get("policy_reloader")
    if reloader is None or not version.isalnum():
        return None
    path = reloader.snapshots.root / version
    try:
        return Policy.load(path) if path.is_dir() else None
    except (PolicyError, OSError):
        return None


# -- Candidate ----------------------------------------------------------------------------

@bp.route("/candidate", methods=["GET", "POST"])
def candidate():
    directory = (request.values.get("directory") or "").strip()
    last = min(max(request.values.get("last", REPLAY_DEFAULT, type=int) or REPLAY_DEFAULT, 1), REPLAY_MAX)
    analysis = None
    if request.method == "POST":
        access.require("analyse_candidate")  # as POST /v1/policy/diff, files or a directory
        uploads = [f for f in request.files.getlist("files") if f.filename]
        if uploads:
            analysis = _analyse_uploads(uploads, last)
            directory = ""
        else:
            analysis = _analyse(directory, last)
    status = 400 if analysis and ("error" in analysis or "problems" in analysis) else 200
    status = analysis.get("status", status) if analysis else status
    return _candidate_page(directory=directory, last=last, analysis=analysis), status


def _policy_dir() -> Path:
    """The policy directory the server watches (what serves is its vetted snapshot)."""
    reloader = current_app.extensions.get("policy_reloader")
    return reloader.directory if reloader else _authz().policy.directory


def _candidate_page(**context):
    return render_template("candidate.html", title="Candidate", replay_max=REPLAY_MAX, policy_dir=_policy_dir(),
                           shadow=shadow_summary(),
                           **{"directory": "", "last": REPLAY_DEFAULT, "analysis": None, "reload": None,
                              "shadow_problems": None, **context})


def _uploaded(uploads, work) -> tuple[list[str], str | None]:
    """The serving policy's directory (its tests/ too) copied to ``work``, each uploaded
    file replacing its namesake (as the API's ``files`` do); the names, or an error."""
    names = [Path(f.filename).name for f in uploads]
    unknown = [n for n in names if n not in POLICY_FILES]
    if unknown:
        return names, f"not a policy file: {', '.join(unknown)} (give {', '.join(POLICY_FILES)})"
    shutil.copytree(_authz().policy.directory, work)
    for name, upload in zip(names, uploads):
        upload.save(work / name)
    return names, None


def _analyse_uploads(uploads, last: int) -> dict:
    """Uploaded policy files analysed as a directory (as POST /v1/policy/diff does with ``files``)."""
    with tempfile.TemporaryDirectory(prefix="audience-authz-console-candidate-") as workdir:
        work = Path(workdir) / "candidate"
        names, error = _uploaded(uploads, work)
        if error:
            return {"error": error}
        analysis = _analyse(str(work), last)
        analysis["uploaded"] = names
        return analysis


def _analyse(directory: str, last: int) -> dict:
    """check, the candidate's tests with coverage, and the replay of the newest ``last``
    decisions against it (what POST /v1/policy/diff answers), with its symbolic diff and
    proofs; the analyses in their processes (policytools/sandbox.py), bounded as the API's."""
    path = Path(directory)
    try:
        found = bool(directory) and path.is_dir()
    except (OSError, ValueError):  # e.g. a name too long for the file system, a NUL in it
        found = False
    if not found:
        return {"error": f"no such directory on the server: {directory[:200]!r}"}
    serving = _authz().policy
    try:
        sandbox.check_bounds(path)
        # what POST /v1/policy/diff answers (the decisions of the policy serving), with the
        # symbolic diff and what `policy verify` proves: one analysis, in its process
        result = sandbox.run("candidate analysis", impact.analyse, str(serving.directory), str(path),
                             impact.rows(last, None, serving.version), symbolic=True, proofs=True,
                             only_version=serving.version)
        if "problems" in result:
            return {"problems": result["problems"]}
        candidate = Policy.load(path)
    except PolicyError as exc:
        return {"problems": exc.problems}
    except ApiError as exc:  # too costly, busy or failed: said on the page, nothing else affected
        return {"error": f"{exc.code}: {exc.message}", "status": exc.status}
    return {"view": policyview.build(candidate, coverage=True), "replay": result["diff"],
            "candidate_version": result["candidate_version"], "symbolic": result["symbolic"],
            "proofs": result["proofs"]}


@bp.post("/reload")
def reload():
    access.require("reload_policy")
    result = current_app.extensions["policy_reloader"].reload("console")
    return _candidate_page(reload=result.body())


@bp.post("/shadow")
def shadow():
    """Decide every live request with a candidate too (as PUT /v1/policy/shadow): a
    directory on the server, or uploaded files replacing those of the serving policy."""
    access.require("shadow_policy")
    reloader = current_app.extensions["policy_reloader"]
    uploads = [f for f in request.files.getlist("files") if f.filename]
    directory = (request.values.get("directory") or "").strip()
    with tempfile.TemporaryDirectory(prefix="audience-authz-console-shadow-") as workdir:
        if uploads:
            work = Path(workdir) / "candidate"
            _, error = _uploaded(uploads, work)
            problems = [("upload", 0, error)] if error else _set_shadow(reloader, work)
        else:
            try:
                found = bool(directory) and Path(directory).is_dir()
            except (OSError, ValueError):
                found = False
            problems = _set_shadow(reloader, directory) if found else [
                ("directory", 0, f"no such directory on the server: {directory[:200]!r}")]
    return _candidate_page(directory=directory, shadow_problems=problems), 400 if problems else 200


@bp.post("/shadow/stop")
def stop_shadow():
    access.require("shadow_policy")
    current_app.extensions["policy_reloader"].clear_shadow()
    return _candidate_page()


# -- Events -------------------------------------------------------------------------------

def sentence(event) -> str:
    """An event as a sentence (the payload's details stay beside it)."""
    p = json.loads(event.payload)
    t = event.type
    if t == "disconnect_audience":
        left = "no audience targeting" if p.get("no_audience_targeting") else "its other audiences"
        return (f"ad group {p.get('ad_group_id')} of account {p.get('account_id')} lost audience"
                f" {p.get('audience_id')} (it now has {left})")
    if t == "pause_ad_group":
        return f"ad group {p.get('ad_group_id')} of account {p.get('account_id')} was paused: its include list emptied"
    if t == "end_share":
        return f"the share of audience {p.get('audience_id')} with account {p.get('account_id')} ended"
    if t == "remove_from_list":
        return f"audience {p.get('audience_id')} left the list of account {p.get('account_id')}"
    if t == "propagate_update":
        n = len(p.get("account_ids") or [])
        return f"the owner's change to audience {p.get('audience_id')} reached {n} recipient(s)"
    details = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in p.items() if k != "type" and v not in (None, "", []))
    return f"{t.replace('_', ' ')}: {details}" if details else t.replace("_", " ")


@bp.get("/events")
def events():
    before = _id_arg("before")
    audience = (request.args.get("audience") or "").strip()[:128]
    rows, next_before = queries.events(before, audience)
    why = queries.decisions_by_id({e.decision_id for e in rows if e.decision_id})
    items = [{"event": e, "sentence": sentence(e), "why": why.get(e.decision_id),
              "payload": json.dumps(json.loads(e.payload), indent=1)} for e in rows]
    return render_template("events.html", title="Events", items=items, next_before=next_before, audience=audience,
                           before=before)


def _set_shadow(reloader, directory) -> list:
    """The shadow's problems; a candidate too costly to check (or no place to) is one."""
    try:
        return reloader.set_shadow(directory)
    except ApiError as exc:
        return [("analysis", 0, f"{exc.code}: {exc.message}")]

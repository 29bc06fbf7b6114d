"""HTTP routes for policy authors: reload the policy, and replay the decision log against a
candidate policy (impact analysis; with ``symbolic``, every changed region of requests).
They need the bearer token like every /v1 route."""

from __future__ import annotations

import datetime
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Literal

from flask import current_app
from flask_openapi3 import APIBlueprint, Tag
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from audience_authz.exceptions import ApiError
from audience_authz.http import responses as R
from audience_authz.policytools import diff as policydiff
from audience_authz.policytools import impact, sandbox
from audience_authz.vocabulary import OPTIONAL_FILES, POLICY_FILES

api = APIBlueprint("policy", __name__, url_prefix="/v1/policy", abp_security=[{"bearer": []}],
                   abp_responses=R.COMMON)
POLICY = Tag(name="policy")
PolicyFile = Literal["model.conf", "policy.csv", "facts.yaml", "reasons.yaml"]


class DiffBody(BaseModel):
    """A candidate policy, as a directory on the server or as files in the body (each
    replaces that file of the policy now serving), and the decisions to replay."""

    model_config = ConfigDict(extra="forbid", strict=True)
    candidate_dir: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = None
    files: dict[PolicyFile, Annotated[str, StringConstraints(max_length=1024 * 1024)]] | None = Field(
        None, description="e.g. {\"policy.csv\": \"...\"}; the other files are those now serving")
    last: int = Field(1000, ge=1, le=100_000, description="replay the newest N decisions")
    since: Annotated[datetime.datetime, AfterValidator(policydiff.as_utc)] | None = Field(
        None, strict=False, description="only decisions at or after this time (read as UTC when it has no offset)")
    examples: int = Field(3, ge=0, le=20, description="examples per change")
    only_version: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = Field(
        None, description="replay only the decisions this policy version made; default: the version serving; "
                          "\"all\": every decision")
    symbolic: bool = Field(False, description="also every region of requests (past or not) whose answer"
                           " changes, proven with z3, each with the replayed requests that fall in it")

    @model_validator(mode="after")
    def _one_candidate(self) -> DiffBody:
        if (self.candidate_dir is None) == (self.files is None):
            raise ValueError("give exactly one of candidate_dir and files")
        if self.files is not None and not self.files:
            raise ValueError("files names no policy file")
        return self


@api.post("/reload", operation_id="reloadPolicy", tags=[POLICY], responses={200: R.ReloadResult, 422: R.PolicyRefused},
          summary="Reload the policy files into this worker (others follow within the watch interval)")
def post_reload():
    result = current_app.extensions["policy_reloader"].reload("api")
    if result.status == "refused":
        return {"error": {"code": "policy_refused", "message": "the policy fails policy check or its tests;"
                          " the last good policy keeps serving", "problems": result.body()["problems"]},
                "policy_version": result.policy_version}, 422
    return result.body()


def _candidate_directory(body, serving, workdir: Path) -> Path:
    """The candidate a body names: ``files`` over the policy in force (written to ``workdir``),
    or an existing ``candidate_dir`` (400 when there is none)."""
    if body.files is not None:
        for name in (*POLICY_FILES, *OPTIONAL_FILES):  # what is not given stays as it serves
            if (serving.directory / name).is_file():
                shutil.copyfile(serving.directory / name, workdir / name)
        for name, content in body.files.items():
            (workdir / name).write_text(content)
        return workdir
    directory = Path(body.candidate_dir)
    try:
        found = directory.is_dir()
    except OSError:  # e.g. a name longer than the file system allows
        found = False
    if not found:
        raise ApiError(400, "invalid_request", f"candidate_dir: no such directory {body.candidate_dir[:200]!r}")
    return directory


@api.post("/diff", operation_id="diffPolicy", tags=[POLICY], responses={200: R.DiffReport, 422: R.PolicyRefused},
          summary="Replay the decision log against a candidate policy: what would change")
def post_diff(body: DiffBody):
    serving = current_app.extensions["authz"].policy
    workdir = Path(tempfile.mkdtemp(prefix="audience-authz-candidate-"))
    try:
        directory = _candidate_directory(body, serving, workdir)
        sandbox.check_bounds(directory)
        version = None if body.only_version == "all" else (body.only_version or serving.version)
        past = impact.rows(body.last, body.since, version)  # naive UTC already (policydiff.as_utc)
        result = sandbox.run("policy diff", impact.analyse, str(serving.directory), str(directory), past,
                             examples=body.examples, symbolic=body.symbolic, only_version=version)
        if "problems" in result:
            return {"error": {"code": "policy_refused", "message": "the candidate fails policy check",
                              "problems": [{"file": p[0], "line": p[1], "column": getattr(p, "column", 1),
                                            "message": p[2]} for p in result["problems"]]}}, 422
        return {"retired_codes": result["retired_codes"], **result["diff"],
                **({"symbolic": result["symbolic"]} if body.symbolic else {})}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# -- shadow evaluation (engine/shadow.py) ------------------------------------------------------

class ShadowBody(BaseModel):
    """The candidate to decide every live request with, beside the policy in force: a
    directory on the server, or files in the body (each replacing that file of the policy
    now serving)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    candidate_dir: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = None
    files: dict[PolicyFile, Annotated[str, StringConstraints(max_length=1024 * 1024)]] | None = None

    @model_validator(mode="after")
    def _one_candidate(self) -> ShadowBody:
        if (self.candidate_dir is None) == (self.files is None):
            raise ValueError("give exactly one of candidate_dir and files")
        if self.files is not None and not self.files:
            raise ValueError("files names no policy file")
        return self


def _shadow_summary() -> dict:
    """The shadow in force and its disagreements so far, by (action, from, to), summed over
    the workers (from the metrics) with a few decision ids of this worker each."""
    import os

    from prometheus_client import REGISTRY, CollectorRegistry, multiprocess

    from audience_authz.metrics import MULTIPROC_ENV

    shadow = current_app.extensions["authz"].shadow
    body = {"active": shadow is not None, "policy_version": current_app.extensions["authz"].policy.version,
            "shadow_version": shadow.policy.version if shadow else None}
    if shadow is None:
        return body
    registry = REGISTRY
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    decided = failed = 0
    kinds: dict[tuple, int] = {}
    for family in registry.collect():
        for sample in family.samples:
            labels = sample.labels
            if labels.get("shadow") != shadow.policy.version or not sample.name.endswith("_total"):
                continue
            if sample.name == "audience_authz_shadow_decisions_total":
                if labels["outcome"] == "failed":
                    failed += int(sample.value)
                else:
                    decided += int(sample.value)
            elif sample.name == "audience_authz_shadow_disagreements_total":
                key = (labels["action"], labels["from"], labels["to"])
                kinds[key] = kinds.get(key, 0) + int(sample.value)
    body.update({"decisions": decided, "failed": failed, "disagreements": sum(kinds.values()), "by": [
        {"action": a, "from": f, "to": t, "count": n, "decision_ids": list(shadow.examples.get((a, f, t), []))}
        for (a, f, t), n in sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0]))]})
    return body


@api.get("/shadow", operation_id="getPolicyShadow", tags=[POLICY], responses={200: R.ShadowSummary},
         summary="The shadow policy, and its disagreements with the policy in force by (action, from, to)")
def get_shadow():
    return _shadow_summary()


@api.put("/shadow", operation_id="setPolicyShadow", tags=[POLICY], responses={200: R.ShadowSummary, 422: R.PolicyRefused},
         summary="Decide every live request with a candidate policy too, changing no answer")
def put_shadow(body: ShadowBody):
    reloader = current_app.extensions["policy_reloader"]
    serving = current_app.extensions["authz"].policy
    workdir = Path(tempfile.mkdtemp(prefix="audience-authz-shadow-"))
    try:
        directory = _candidate_directory(body, serving, workdir)
        problems = reloader.set_shadow(directory)
        if problems:
            return {"error": {"code": "policy_refused", "message": "the shadow candidate fails policy check",
                              "problems": [{"file": f, "line": n, "message": m} for f, n, m in problems]}}, 422
        return _shadow_summary()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@api.delete("/shadow", operation_id="stopPolicyShadow", tags=[POLICY], responses={200: R.ShadowSummary},
            summary="Stop the shadow evaluation")
def delete_shadow():
    current_app.extensions["policy_reloader"].clear_shadow()
    return _shadow_summary()

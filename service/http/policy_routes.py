"""HTTP routes for policy authors: reload the policy, and replay the decision log against a
candidate policy (impact analysis). Both need the bearer token like every /v1 route."""

from __future__ import annotations

import datetime
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Literal

from flask import current_app
from flask_openapi3 import APIBlueprint, Tag
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from audience_authz.policytools import diff as policydiff
from audience_authz.http import responses as R
from audience_authz.exceptions import ApiError
from audience_authz.engine.policy import Policy
from audience_authz.policytools.check import check_policy

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

    @model_validator(mode="after")
    def _one_candidate(self) -> "DiffBody":
        if (self.candidate_dir is None) == (self.files is None):
            raise ValueError("give exactly one of candidate_dir and files")
        if self.files is not None and not self.files:
            raise ValueError("files names no policy file")
        return self


@api.post("/reload", tags=[POLICY], responses={200: R.ReloadResult, 422: R.PolicyRefused},
          summary="Reload the policy files into this worker (others follow within the watch interval)")
def post_reload():
    result = current_app.extensions["policy_reloader"].reload("api")
    if result.status == "refused":
        return {"error": {"code": "policy_refused", "message": "the policy fails policy check or its tests;"
                          " the last good policy keeps serving", "problems": result.body()["problems"]},
                "policy_version": result.policy_version}, 422
    return result.body()


@api.post("/diff", tags=[POLICY], responses={200: R.DiffReport, 422: R.PolicyRefused}, summary="Replay the decision log against a candidate policy: what would change")
def post_diff(body: DiffBody):
    serving = current_app.extensions["authz"].policy
    workdir = None
    try:
        if body.files is not None:
            workdir = Path(tempfile.mkdtemp(prefix="audience-authz-candidate-"))
            for name in ("model.conf", "policy.csv", "facts.yaml", "reasons.yaml"):
                shutil.copyfile(serving.directory / name, workdir / name)
            for name, content in body.files.items():
                (workdir / name).write_text(content)
            directory = workdir
        else:
            directory = Path(body.candidate_dir)
            try:
                found = directory.is_dir()
            except OSError:  # e.g. a name longer than the file system allows
                found = False
            if not found:
                raise ApiError(400, "invalid_request", f"candidate_dir: no such directory {body.candidate_dir[:200]!r}")
        problems = check_policy(directory)
        if problems:
            return {"error": {"code": "policy_refused", "message": "the candidate fails policy check",
                              "problems": [{"file": f, "line": n, "message": m} for f, n, m in problems]}}, 422
        candidate = Policy.load(directory)
        report = policydiff.replay(policydiff.select(body.last, body.since).iterator(), candidate, serving,
                                   body.examples)
        return report.as_dict()
    finally:
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)

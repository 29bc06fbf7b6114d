"""/openapi.json as a contract for the services that call this one: a valid document,
stable operation ids, enums for the names a caller sends, open lists (known values, any
other accepted) for those the service may add to, one schema per effect and event type,
headers, servers; a TypeScript client generated from it compiles and runs against a live
server; the Python client's types are the document's."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import typing

import pytest
import yaml
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

import audience_authz_client as py_client
from audience_authz import vocabulary
from audience_authz.config import shipped_policy_dir
from tests.support import ROOT, Api, LiveServer, world_factory

TS_CHECK = ROOT / "client" / "ts-check"


@pytest.fixture(scope="module")
def anonymous(inproc_server):
    """A client of the session's in-process app that sends no token."""
    return inproc_server.client().with_token(None)


@pytest.fixture(scope="module")
def doc(anonymous) -> dict:
    answer = anonymous.get("/openapi.json")  # no token: the document holds no data
    assert answer.status == 200
    return answer.body


def _operations(doc):
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            yield path, method, operation


def _schema(doc, name: str) -> dict:
    return doc["components"]["schemas"][name]


def test_the_document_is_valid_openapi_and_readable_without_a_token(doc, anonymous):
    validate(doc)
    assert doc["servers"] and doc["servers"][0]["url"]
    assert anonymous.get("/v1/events").status == 401  # the data still needs the token


def test_every_operation_has_an_explicit_stable_id(doc):
    ids = {(method.upper(), path): op.get("operationId") for path, method, op in _operations(doc)}
    assert all(re.fullmatch(r"[a-z][A-Za-z]+", i or "") for i in ids.values()), ids
    assert len(set(ids.values())) == len(ids)
    expected = {("POST", "/v1/authorize"): "authorize", ("POST", "/v1/authorize/batch"): "authorizeBatch",
                ("POST", "/v1/audiences/{id}/shares"): "shareAudience",
                ("DELETE", "/v1/audiences/{id}/shares/{account_id}"): "stopSharing",
                ("DELETE", "/v1/audiences/{id}/shares"): "stopSharingAll",
                ("GET", "/v1/events"): "listEvents", ("GET", "/v1/events/latest"): "latestEvent",
                ("GET", "/v1/events/stream"): "streamEvents", ("PUT", "/v1/ad-groups/{id}"): "upsertAdGroup"}
    assert {key: ids[key] for key in expected} == expected


def test_every_answer_has_a_body_schema_and_the_headers(doc):
    for path, method, op in _operations(doc):
        assert any(p["name"] == "X-Request-Id" and p["in"] == "header" for p in op["parameters"])
        for status, response in op["responses"].items():
            where = f"{method} {path} {status}"
            assert response.get("content"), f"{where}: no body schema"
            assert "X-Request-Id" in response["headers"], where
            if status in ("429", "503"):
                assert "Retry-After" in response["headers"], where


def _enum(schema: dict) -> set[str]:
    return set(schema["enum"])


def test_the_names_a_caller_sends_are_enums_and_reason_codes_are_open(doc):
    assert _enum(_schema(doc, "AuthorizeBody")["properties"]["action"]) == set(vocabulary.AUDIENCE_ACTIONS)
    assert _enum(_schema(doc, "AuthorizeAnswer")["properties"]["decision"]) == {"allow", "deny"}
    events = doc["paths"]["/v1/events"]["get"]["parameters"]
    assert _enum(next(p for p in events if p["name"] == "type")["schema"]["items"]) == set(py_client.KNOWN_EVENT_TYPES)
    # a reason code: the known ones (the served policy's own, derived from its reasons.yaml) or any string
    known, other = _schema(doc, "Reason")["properties"]["code"]["anyOf"]
    reasons = yaml.safe_load((shipped_policy_dir() / "reasons.yaml").read_text())["deny"]
    assert set(known["enum"]) == set(reasons) | {"response_too_large"}
    assert other == {"type": "string"}


def _union(doc, schema: dict) -> dict[str, str]:
    """type -> schema name of an open discriminated union (any of the union of the known types
    or a generic object of another type), checked against each member's own enum."""
    schema, other = schema["anyOf"]
    generic = _schema(doc, other["$ref"].rsplit("/", 1)[1])
    assert generic["properties"]["type"]["type"] == "string" and "enum" not in generic["properties"]["type"]
    assert schema["discriminator"]["propertyName"] == "type"
    mapping = schema["discriminator"]["mapping"]
    assert sorted(mapping.values()) == sorted(ref["$ref"] for ref in schema["oneOf"])
    named = {}
    for kind, ref in mapping.items():
        name = ref.rsplit("/", 1)[1]
        member = _schema(doc, name)
        assert "type" in member["required"] and member["properties"]["type"].get("const", kind) == kind
        named[kind] = name
    return named


def test_effects_and_events_are_discriminated_unions_with_a_schema_per_type(doc):
    effects = _union(doc, _schema(doc, "AuthorizeAnswer")["properties"]["effects"]["items"])
    assert set(effects) == set(vocabulary.EFFECTS) | {"pause_ad_group"}
    events = _union(doc, _schema(doc, "EventPage")["properties"]["events"]["items"])
    assert set(events) == set(py_client.KNOWN_EVENT_TYPES)
    for kind, name in events.items():  # each event's payload has a schema of its own, of that type
        payload = _schema(doc, _schema(doc, name)["properties"]["payload"]["$ref"].rsplit("/", 1)[1])
        assert payload["properties"]["type"].get("const", kind) == kind and payload["properties"]


def _validator(doc, name: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": doc["components"]})


def test_an_answer_of_a_newer_service_or_policy_fits_the_document(doc):
    """A reason code, effect type or event type the document does not list is still valid;
    a known effect type with a wrong shape, or an effect without a type, is not."""
    answer = {"decision": "allow", "reasons": [{"code": "a_code_added_later", "message": "m"}],
              "effects": [{"type": "notify_partner", "partner_id": "p1"},
                          {"type": "end_share", "audience_id": "a", "account_id": "b", "reason": "another_new_code"}],
              "policy_version": "v", "decision_id": "d"}
    assert list(_validator(doc, "AuthorizeAnswer").iter_errors(answer)) == []
    for broken in ({"type": "end_share", "audience_id": 1, "account_id": "b"}, {"audience_id": "a"}):
        assert list(_validator(doc, "AuthorizeAnswer").iter_errors({**answer, "effects": [broken]}))
    page = {"events": [{"id": 1, "type": "audience_archived", "audience_id": "a", "account_id": None,
                        "decision_id": None, "at": None, "payload": {"reason": "x"}}], "next_after": 1}
    assert list(_validator(doc, "EventPage").iter_errors(page)) == []


def test_optional_fields_are_not_required(doc):
    body = _schema(doc, "AuthorizeBody")
    assert set(body["required"]) == {"principal", "action", "resource"}
    assert "default" not in body["properties"]["explain"]  # generators would make it required
    assert set(_schema(doc, "Context").get("required", [])) == set()


# -- the Python client's types are the document's -------------------------------------------

PAIRS = {  # client dataclass -> schema
    py_client.Decision: "AuthorizeAnswer", py_client.Reason: "Reason", py_client.Denied: "DenyBody",
    py_client.EndShare: "EndShareEffect", py_client.RemoveFromList: "RemoveFromListEffect",
    py_client.DisconnectAudience: "DisconnectAudienceEffect", py_client.PauseAdGroup: "PauseAdGroupEffect",
    py_client.PropagateUpdate: "PropagateUpdateEffect", py_client.Targeting: "Targeting",
    py_client.BusinessCenter: "BusinessCenterView", py_client.Account: "AccountView",
    py_client.Audience: "AudienceView", py_client.AudienceList: "AudienceList",
    py_client.AudienceResult: "AudienceResult", py_client.DeleteResult: "DeleteResult",
    py_client.ShareResult: "ShareResult", py_client.ShareEntry: "ShareEntry", py_client.ShareList: "ShareList",
    py_client.StopResult: "StopResult", py_client.ShareLogEntry: "ShareLogEntry", py_client.ShareLog: "ShareLog",
    py_client.AdGroup: "AdGroupView", py_client.AdGroupResult: "AdGroupResult", py_client.EventPage: "EventPage",
    py_client.DecisionEntry: "DecisionView", py_client.DecisionPage: "DecisionPage",
}


def _answer_fields(cls) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("client")}


def _literal_values(tp) -> set[str] | None:
    """The values of a Literal (inside Optional or a tuple), else None."""
    for arg in (tp, *typing.get_args(tp)):
        if typing.get_origin(arg) is typing.Literal:
            return set(typing.get_args(arg))
        inner = _literal_values(arg) if typing.get_args(arg) and arg is not tp else None
        if inner:
            return inner
    return None


def _enum_values(prop: dict) -> set[str] | None:
    for candidate in (prop, prop.get("items", {}), *prop.get("anyOf", [])):
        if "enum" in candidate:
            return set(candidate["enum"])
        if "const" in candidate:
            return {candidate["const"]}
        if "enum" in candidate.get("items", {}):
            return set(candidate["items"]["enum"])
    return None


@pytest.mark.parametrize("cls", list(PAIRS), ids=lambda c: c.__name__)
def test_the_python_clients_answers_match_the_document(doc, cls):
    schema = _schema(doc, PAIRS[cls])
    fields = _answer_fields(cls)
    assert set(fields) == set(schema["properties"]), PAIRS[cls]
    required = set(schema.get("required", []))
    hints = typing.get_type_hints(cls, vars(py_client.types))
    for name, f in fields.items():
        has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        if not has_default:  # what the client requires, the document promises
            assert name in required, f"{cls.__name__}.{name} is optional in the document"
        if name not in required:
            assert has_default, f"{cls.__name__}.{name} needs a default: the document does not promise it"
        ours, theirs = _literal_values(hints[name]), _enum_values(schema["properties"][name])
        if theirs is not None and ours is not None:
            extra = set(py_client.CLIENT_REASONS) & ours  # the client's own fail-closed codes
            assert ours == theirs | extra, f"{cls.__name__}.{name}"


def test_the_python_clients_event_has_each_event_schemas_fields(doc):
    names = _union(doc, _schema(doc, "EventPage")["properties"]["events"]["items"]).values()
    for name in names:
        assert set(_answer_fields(py_client.Event)) == set(_schema(doc, name)["properties"]), name


# -- a generated TypeScript client -------------------------------------------------------------

def _npm_ready() -> None:
    """node_modules of client/ts-check, installed from its lock file (pinned versions)."""
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.fail("node and npm are needed for the TypeScript contract test")
    stamp = TS_CHECK / "node_modules" / ".package-lock.json"
    if not stamp.exists() or stamp.stat().st_mtime < (TS_CHECK / "package-lock.json").stat().st_mtime:
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=TS_CHECK, check=True, timeout=600,
                       capture_output=True)


def _run(*args: str, timeout: int = 300) -> str:
    result = subprocess.run(args, cwd=TS_CHECK, capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, "NO_COLOR": "1"})
    assert result.returncode == 0, f"{' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.mark.full
def test_a_generated_typescript_client_compiles_and_runs(tmp_path):
    _npm_ready()
    with LiveServer(f"sqlite:///{tmp_path / 'authz.db'}") as live:
        api = Api(live.base_url, live.token)
        w = world_factory(api)
        # generated from the live document, read without a token
        _run("npx", "openapi-typescript", f"{live.base_url}/openapi.json", "-o", "generated/api.d.ts")
        _run("npx", "tsc", "-p", ".")
        out = _run("node", "dist/main.js", live.base_url, live.token, w.owner, w.recipient, w.peer, w.A)
        seen = json.loads(out.strip().splitlines()[-1])
        shares = api.ok(api.get(f"/v1/audiences/{w.A}/shares", account=w.owner))["shares"]
    assert seen["denied"] == {"decision": "deny", "codes": ["reshare_forbidden"], "request_id": "ts-authorize-1"}
    assert sorted(seen["shared"]) == sorted([w.recipient, w.peer])
    assert seen["reshare"] == {"status": 403, "codes": ["reshare_forbidden"]}
    assert seen["allowed"] == {"decision": "allow", "effects": [f"end_share:{w.peer}", f"remove_from_list:{w.peer}"]}
    assert seen["stopped"] == {"stopped": [w.peer], "effects": [f"end_share:{w.peer}", f"remove_from_list:{w.peer}"]}
    assert seen["latest_event"] > 0
    assert [s["account_id"] for s in shares] == [w.recipient]  # the TypeScript calls really changed state

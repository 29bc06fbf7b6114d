"""/openapi.json as a contract: what flask-openapi3 does not write from the routes.

Every answer carries ``X-Request-Id`` (http/logs.py) and every operation takes it;
429 and 503 may carry ``Retry-After``; every action takes ``Idempotency-Key`` and
its answers may carry ``Idempotent-Replayed``; 414 and 431 come from the HTTP server (gunicorn)
as a short HTML page; ``servers`` names the service's own origin. The document holds no
data, so it is served without a token (app.is_open) for code generators.

A property's ``default`` moves into its description: generators such as openapi-typescript
type a property that has a default as always present, which would make a caller send
``explain`` or ``context`` it means to leave out. Optional stays optional.
"""

from __future__ import annotations

import json

_HEADERS = {
    "X-Request-Id": {"description": "The request id: the caller's X-Request-Id when it is 1-128 characters of"
                                    " A-Z a-z 0-9 . _ : -, else one made by the service. In the access log and"
                                    " the decision log.",
                     "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:\\-]{1,128}$"}},
    "Retry-After": {"description": "Seconds to wait before trying again", "schema": {"type": "integer", "minimum": 1}},
    "Idempotent-Replayed": {"description": "`true` on an answer given again for an Idempotency-Key (nothing was"
                                           " applied again)", "schema": {"type": "string", "enum": ["true"]}},
}
# an action's Idempotency-Key (http/idempotency.py): the methods and paths that take it
_ACTION_METHODS = {"put", "post", "patch", "delete"}
_NOT_ACTIONS = ("/v1/authorize", "/v1/policy/")
_IDEMPOTENCY_KEY_PARAMETER = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "description": "A key of the caller's for this logical call (e.g. a UUID), reused on its retries: the same"
                   " request again within the retention is answered again, not applied again; another request"
                   " with the key is 422 idempotency_key_reused",
    "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,255}$"}}
# any text is accepted: one that is not 1-128 of A-Z a-z 0-9 . _ : - is replaced, not refused
_REQUEST_ID_PARAMETER = {"name": "X-Request-Id", "in": "header", "required": False,
                         "description": "The caller's request id, echoed in the answer and the logs (replaced by"
                                        " one the service makes when it is not 1-128 of A-Z a-z 0-9 . _ : -)",
                         "schema": {"type": "string"}}
_FROM_THE_HTTP_SERVER = {"text/html": {"schema": {"type": "string"}}}


def finish(app) -> dict:
    """Complete the app's document in place (flask-openapi3 caches it in ``app.spec_json``)."""
    doc = app.api_doc
    components = doc.setdefault("components", {})
    components["headers"] = {name: dict(header) for name, header in _HEADERS.items()}
    doc["servers"] = [{"url": "/", "description": "this service (the origin the document was read from)"}]
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            operation.setdefault("parameters", []).append(dict(_REQUEST_ID_PARAMETER))  # inline, as the others
            action = method in _ACTION_METHODS and not path.startswith(_NOT_ACTIONS)
            if action:
                operation["parameters"].append(dict(_IDEMPOTENCY_KEY_PARAMETER))
                if "422" not in operation["responses"] and "400" in operation["responses"]:
                    # the key used before with another request: an error body like a 400's
                    operation["responses"]["422"] = {
                        "description": "idempotency_key_reused: the Idempotency-Key was used with another request",
                        "content": operation["responses"]["400"].get("content", {})}
            for status, response in operation["responses"].items():
                headers = response.setdefault("headers", {})
                headers["X-Request-Id"] = {"$ref": "#/components/headers/X-Request-Id"}
                if action and status in ("200", "201", "403"):
                    headers["Idempotent-Replayed"] = {"$ref": "#/components/headers/Idempotent-Replayed"}
                if status in ("429", "503"):
                    headers["Retry-After"] = {"$ref": "#/components/headers/Retry-After"}
                if status in ("414", "431"):
                    response["content"] = _FROM_THE_HTTP_SERVER
    for schema in components.get("schemas", {}).values():
        _defaults_described(schema)
    return doc


def _defaults_described(schema: dict) -> None:
    required = set(schema.get("required", ()))
    for name, prop in schema.get("properties", {}).items():
        if "default" in prop and name not in required:
            default = prop.pop("default")
            if default is not None and default != []:
                text = prop.get("description", "").rstrip(".")
                prop["description"] = f"{text} (default: {json.dumps(default)})".lstrip()

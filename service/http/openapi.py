"""/openapi.json as a contract: what flask-openapi3 does not write from the routes.

Every answer carries ``X-Request-Id`` (http/logs.py) and every operation takes it;
429 and 503 may carry ``Retry-After``; 414 and 431 come from the HTTP server (gunicorn)
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
}
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
    for operations in doc["paths"].values():
        for operation in operations.values():
            operation.setdefault("parameters", []).append(dict(_REQUEST_ID_PARAMETER))  # inline, as the others
            for status, response in operation["responses"].items():
                headers = response.setdefault("headers", {})
                headers["X-Request-Id"] = {"$ref": "#/components/headers/X-Request-Id"}
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

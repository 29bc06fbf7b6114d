"""``/docs``: the API's OpenAPI document in Swagger UI, served by the service itself.

The page and its scripts come bundled in the flask-openapi3-swagger package (nothing is
fetched from the internet). They need no token (``http/app.py``'s ``is_open``): a browser
sends none, and the page holds the API's description only, never data. The document is
embedded in the page, so no second request fetches it; "Authorize" in the page takes the
token that "Try it out" then sends.
"""

from __future__ import annotations

import importlib.resources

from flask import Blueprint, current_app, render_template_string

PREFIX = "/docs"
_ASSETS = importlib.resources.files("flask_openapi3_swagger") / "templates" / "swagger"

_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{{ title }}: API</title>
  <link rel="stylesheet" href="{{ url_for('docs.static', filename='css/swagger-ui.css') }}">
</head>
<body>
<div id="swagger-ui"></div>
<script id="openapi" type="application/json">{{ spec|tojson }}</script>
<script src="{{ url_for('docs.static', filename='js/swagger-ui-bundle.js') }}"></script>
<script>
  window.ui = SwaggerUIBundle({
    spec: JSON.parse(document.getElementById("openapi").textContent),
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout"
  });
</script>
</body>
</html>
"""


def is_docs_path(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def register(app) -> None:
    docs = Blueprint("docs", __name__, static_folder=str(_ASSETS), static_url_path=PREFIX + "/static")

    @docs.get(PREFIX)
    def page():
        spec = current_app.api_doc
        return render_template_string(_PAGE, spec=spec, title=spec["info"]["title"])

    app.register_blueprint(docs)

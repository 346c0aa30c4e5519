"""`GET /api/openapi.json` (the document) and `GET /api/docs` (Swagger UI on it).

Swagger UI's files come from the swagger-ui-bundle-v2 package and are served from
here, so the page works offline; the page has no inline script (web/static/api-docs.js
starts the UI), so it runs under a `script-src 'self'` Content-Security-Policy.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, abort, jsonify, render_template, send_from_directory
from swagger_ui_bundle import swagger_ui_path

from web.openapi import document

bp = Blueprint("apidocs", __name__, url_prefix="/api")
SWAGGER_UI = Path(str(swagger_ui_path))
# Only what the page loads: the rest of the bundle (its own index page, source maps) is not served.
ASSETS = frozenset({"swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png"})
ASSET_MAX_AGE_S = 86400


@bp.get("/openapi.json")
def openapi_json() -> Response:
    """The OpenAPI 3.1 document of this API (public: it describes, it grants nothing)."""
    return jsonify(document())


@bp.get("/docs")
def docs_page() -> str:
    """Swagger UI: read the document, and try requests with an API key (Authorize)."""
    return render_template("api_docs.html")


@bp.get("/docs/<path:name>")
def docs_asset(name: str) -> Response:
    if name not in ASSETS:
        abort(404)
    return send_from_directory(SWAGGER_UI, name, max_age=ASSET_MAX_AGE_S)

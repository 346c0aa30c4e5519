"""`GET /api/openapi.json`: the API's OpenAPI 3.1 document (web/openapi.py writes it)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from web.openapi import document

bp = Blueprint("apidocs", __name__, url_prefix="/api")


@bp.get("/openapi.json")
def openapi_json() -> Response:
    """The OpenAPI 3.1 document of this API (public: it describes, it grants nothing)."""
    return jsonify(document())

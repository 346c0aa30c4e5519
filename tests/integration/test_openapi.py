"""The OpenAPI document and its docs page (Flask test client, real PostgreSQL and Redis).

The document is valid OpenAPI 3.1 and has every operation of the API; what the server
answers (runs in several states, errors) conforms to it; the docs page loads Swagger UI
from this server, with no inline script. The live fuzz is in test_api_fuzz.py.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html.parser import HTMLParser

import pytest
import schemathesis
from openapi_spec_validator import validate
from sqlalchemy import select

from tests.helpers import auth

RUN = {"workflow": "summarize", "input": {"text": "Some text to summarise."}}
# The blueprints whose routes make up the API (the pages and the docs themselves are not in it).
API_BLUEPRINTS = {"api", "workflows", "stream", "health", "prometheus"}


@pytest.fixture()
def document(client) -> dict:
    resp = client.get("/api/openapi.json")
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    return resp.json


def _openapi_path(rule: str) -> str:
    return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule)


def test_the_document_is_openapi_3_1_with_every_operation_of_the_api(app, document):
    """Valid OpenAPI 3.1, and a route added to the API without a contract fails here."""
    validate(document)
    assert document["openapi"].startswith("3.1.")
    routes = {
        (method.lower(), _openapi_path(rule.rule))
        for rule in app.url_map.iter_rules()
        if rule.endpoint.split(".")[0] in API_BLUEPRINTS
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    documented = {(method, path) for path, ops in document["paths"].items() for method in ops}
    assert documented == routes and len(routes) >= 10
    create = document["paths"]["/api/runs"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/RunCreate"}
    assert [p["name"] for p in create["parameters"]] == ["Idempotency-Key"]
    assert document["paths"]["/healthz"]["get"]["security"] == []  # public; the rest need an API key
    assert "security" not in create and document["security"] == [{"apiKey": []}]


def _start_with_one_answered_step(settings, db_session, run_id: str) -> None:
    """Start the run as a worker would, and fill its first step as a Gemini answer leaves it."""
    from taskapp.pipeline import orchestrator
    from taskapp.store.models import Step

    orchestrator.advance_runs(db_session, [uuid.UUID(run_id)], settings)
    db_session.commit()
    step = db_session.scalars(select(Step).where(Step.run_id == uuid.UUID(run_id))).one()
    now = datetime.now(UTC)
    step.status, step.attempts, step.batch_id, step.output = "succeeded", 1, uuid.uuid4(), {"summary": "short"}
    step.tokens_in, step.tokens_out, step.cost_usd, step.buffer_wait_ms = 120, 30, Decimal("0.000042"), 15
    step.started_at, step.finished_at = now - timedelta(seconds=2), now
    db_session.commit()


def test_what_the_server_answers_conforms_to_the_document(client, team, document, settings, db_session):
    """Each answer, success or error, has a status, media type and body the document gives."""
    schema = schemathesis.openapi.from_dict(document)
    _, key = team
    h = auth(key)

    def check(method: str, path: str, resp, status: int) -> None:
        assert resp.status_code == status, resp.data
        assert str(status) in document["paths"][path][method.lower()]["responses"]
        schema[path][method].validate_response(resp)  # media type and body

    created = client.post("/api/runs", headers={**h, "Idempotency-Key": "k-1"}, json=RUN)
    check("POST", "/api/runs", created, 202)
    run_id = created.json["id"]
    replayed = client.post("/api/runs", headers={**h, "Idempotency-Key": "k-1"}, json=RUN)
    check("POST", "/api/runs", replayed, 202)
    assert replayed.json["created"] is False and replayed.json["id"] == run_id
    check("GET", "/api/runs/{run_id}", client.get(f"/api/runs/{run_id}", headers=h), 200)  # queued, no steps
    _start_with_one_answered_step(settings, db_session, run_id)
    running = client.get(f"/api/runs/{run_id}", headers=h)
    check("GET", "/api/runs/{run_id}", running, 200)
    assert running.json["steps"][0]["latency_ms"] == 2000 and running.json["totals"]["tokens_in"] == 120
    check("GET", "/api/runs", client.get("/api/runs?limit=1", headers=h), 200)
    check("POST", "/api/runs/{run_id}/cancel", client.post(f"/api/runs/{run_id}/cancel", headers=h), 202)
    cancelled = client.get(f"/api/runs/{run_id}", headers=h)
    check("GET", "/api/runs/{run_id}", cancelled, 200)
    assert cancelled.json["status"] == "cancelled" and cancelled.json["finished_at"]
    events = client.get(f"/api/runs/{run_id}/events", headers=h)  # ends after run.cancelled
    check("GET", "/api/runs/{run_id}/events", events, 200)
    assert b"event:run.cancelled" in events.data
    check("GET", "/api/workflows", client.get("/api/workflows", headers=h), 200)
    check("GET", "/api/metrics", client.get("/api/metrics", headers=h), 200)
    check("GET", "/metrics", client.get("/metrics", headers=h), 200)
    check("GET", "/healthz", client.get("/healthz"), 200)
    check("GET", "/readyz", client.get("/readyz"), 200)
    # Errors: every one is an ErrorBody, under a status the operation documents.
    check("GET", "/api/runs", client.get("/api/runs"), 401)
    check("GET", "/api/runs", client.get("/api/runs?status=weird", headers=h), 400)
    check("POST", "/api/runs", client.post("/api/runs", headers=h, json={"workflow": "summarize"}), 422)
    check("POST", "/api/runs", client.post("/api/runs", headers={**h, "Idempotency-Key": ""}, json=RUN), 400)
    check("GET", "/api/runs/{run_id}", client.get("/api/runs/not-a-run", headers=h), 404)
    check("GET", "/api/runs/{run_id}/events", client.get(f"/api/runs/{run_id}/events?last_event_id=x", headers=h), 400)
    check("GET", "/metrics", client.get("/metrics"), 401)


def test_a_query_string_is_read_through_its_model(client, team):
    """Out-of-range numbers are clamped, an empty `?status=` is no filter, bad values keep their error codes."""
    _, key = team
    h = auth(key)
    client.post("/api/runs", headers=h, json=RUN)
    client.post("/api/runs", headers=h, json=RUN)
    page = client.get("/api/runs?limit=0&status=", headers=h)
    assert page.status_code == 200 and len(page.json["runs"]) == 1  # limit 0 reads as 1
    assert client.get("/api/metrics?window_s=1", headers=h).json["window_s"] == 60
    assert client.get("/api/runs?limit=many", headers=h).json["error"]["code"] == "invalid_limit"
    assert client.get("/api/metrics?window_s=abc", headers=h).json["error"]["code"] == "invalid_window"
    too_long = client.post("/api/runs", headers={**h, "Idempotency-Key": "k" * 201}, json=RUN)
    assert too_long.status_code == 400 and too_long.json["error"]["code"] == "invalid_idempotency_key"


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts = 0
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "script":
            self._in_script = "src" not in found
        for name in ("src", "href"):
            if found.get(name):
                self.urls.append(found[name])
        if any(name.startswith("on") for name in found) or "style" in found:
            self.inline_scripts += 1  # an inline handler or style attribute breaks a strict CSP too

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts += 1


def test_the_docs_page_loads_swagger_ui_from_this_server_with_no_inline_script(client):
    """Works offline and under `script-src 'self'`: every asset is ours, no script is inline."""
    page = client.get("/api/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    parsed = _Assets()
    parsed.feed(page.get_data(as_text=True))
    assert parsed.inline_scripts == 0
    assert len(parsed.urls) == 4 and all(url.startswith("/") and not url.startswith("//") for url in parsed.urls)
    for url in parsed.urls:
        asset = client.get(url)
        assert asset.status_code == 200 and len(asset.data) > 100, url
    assert client.get("/api/docs/swagger-initializer.js").status_code == 404  # only what the page loads

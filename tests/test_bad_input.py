"""Bad input is a 4xx in the documented error shape: never a 500, a dropped stream, or a run
that should not have been accepted. The Flask test client against real PostgreSQL and Redis."""

from __future__ import annotations

import io
import json
import logging
import re
import uuid

import pytest

from tests.conftest import auth

RUN = {"workflow": "summarize", "input": {"text": "Some text to summarise."}}


def assert_error(resp, status: int, code: str) -> dict:
    """The documented shape: {"error": {"code", "message", "details"}}."""
    shown = b"(a stream)" if resp.mimetype == "text/event-stream" else resp.data[:300]
    assert resp.status_code == status, (resp.status_code, shown)
    error = resp.json["error"]
    assert error["code"] == code and error["message"] and "details" in error
    return error


def runs_of(client, key: str) -> list[dict]:
    return client.get("/api/runs", headers=auth(key)).json["runs"]


def sign_in(client, key: str) -> str:
    """Sign the test client in; the form token the page hands out."""
    assert client.post("/login", data={"api_key": key}).status_code == 302
    page = client.get("/runs/new").data.decode()
    return re.search(r'name="csrf_token" value="([^"]*)"', page).group(1)


# -- item 3: input that answered 500 -------------------------------------------------------


@pytest.mark.parametrize("number", ["Infinity", "-Infinity", "NaN", "1e999", "-1e999"])
def test_non_finite_numbers_are_a_400(client, team, number):
    """Python's JSON parser accepts these; PostgreSQL's jsonb does not: the parser refuses them."""
    _, key = team
    for field in ("run_timeout_s", "max_steps"):
        limits = f'{{"{field}": {number}}}'
        body = '{"workflow": "summarize", "input": {"text": "x"}, "options": {"limits": ' + limits + "}}"
        error = assert_error(client.post("/api/runs", headers=auth(key), data=body,
                                         content_type="application/json"), 400, "invalid_json")
        assert "finite" in error["message"]
    assert runs_of(client, key) == []


@pytest.mark.parametrize("depth", [40, 3_000, 100_000])
def test_deeply_nested_json_is_a_400(client, team, depth):
    _, key = team
    body = '{"workflow": "summarize", "input": {"text": "x", "extra": ' + "[" * depth + "]" * depth + "}}"
    error = assert_error(client.post("/api/runs", headers=auth(key), data=body,
                                     content_type="application/json"), 400, "invalid_json")
    assert "nested" in error["message"]
    shallow = '{"workflow": "summarize", "input": {"text": "x", "extra": [[[1]]]}}'
    assert client.post("/api/runs", headers=auth(key), data=shallow,
                       content_type="application/json").status_code == 202


def test_a_body_over_the_limit_is_a_413_in_the_error_shape(settings, team):
    from web import create_app

    _, key = team
    client = create_app(settings.model_copy(update={"max_content_length": 4096})).test_client()
    big = {"workflow": "summarize", "input": {"text": "x" * 5000}}
    error = assert_error(client.post("/api/runs", headers=auth(key), json=big), 413, "request_entity_too_large")
    assert "4096 bytes" in error["message"]
    assert client.post("/api/runs", headers=auth(key), json=RUN).status_code == 202
    csrf = sign_in(client, key)  # the form too: a 4xx page, not a 500
    resp = client.post("/runs/new", data={"workflow": "summarize", "text": "x" * 5000, "csrf_token": csrf})
    assert resp.status_code == 413
    assert len(runs_of(client, key)) == 1


def test_the_body_limit_is_a_setting():
    from taskapp.settings import load_settings

    assert load_settings({}).max_content_length == 1_048_576
    assert load_settings({"MAX_CONTENT_LENGTH": "65536"}).max_content_length == 65536


def test_a_failed_statements_log_line_holds_no_parameters(app, client, team):
    """A 500 from the database logs the statement, never its parameters (team ids, inputs)."""
    from sqlalchemy import text

    from taskapp.logs import JsonFormatter
    from web.context import db

    secret = f"secret-input-{uuid.uuid4().hex}"

    @app.get("/_test/failing-statement")
    def failing_statement():
        db().execute(text("SELECT CAST(:value AS text), 1 / 0"), {"value": secret})

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        assert_error(client.get("/_test/failing-statement", headers={"Accept": "application/json"}), 500,
                     "internal_error")
    finally:
        root.removeHandler(handler)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    logged = [line for line in lines if line["logger"] == "web.errors"]
    assert logged and "division by zero" in logged[0]["exc"]
    assert secret not in out.getvalue()

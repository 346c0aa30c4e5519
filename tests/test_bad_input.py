"""Bad input is a 4xx in the documented error shape: never a 500, a dropped stream, or a run
that should not have been accepted. The Flask test client against real PostgreSQL and Redis."""

from __future__ import annotations

import io
import json
import logging
import re
import uuid

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

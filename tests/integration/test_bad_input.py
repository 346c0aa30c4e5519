"""Bad input is a 4xx in the documented error shape: never a 500, a dropped stream, or a run
that should not have been accepted. The Flask test client against real PostgreSQL and Redis."""

from __future__ import annotations

import io
import json
import logging
import uuid

import pytest

from tests.helpers import assert_error, auth, example, form_token, ui_login

RUN = {"workflow": "summarize", "input": {"text": "Some text to summarise."}}


def runs_of(client, key: str) -> list[dict]:
    return client.get("/api/runs", headers=auth(key)).json["runs"]


def sign_in(client, key: str) -> str:
    """Sign the test client in; the form token the page hands out."""
    assert ui_login(client, key).status_code == 302
    return form_token(client.get("/runs/new").data)


# -- item 3: input that answered 500 -------------------------------------------------------


@pytest.mark.parametrize(
    "run_input, field",
    [
        ({"workflow": "summarize", "input": {"text": "before\u0000after"}}, "text"),
        ({"workflow": "research", "input": {"question": "What is \u0000 here?"}}, "question"),
        ({"workflow": "research", "input": {"question": "What is \ud800 here?"}}, "question"),  # a lone surrogate
    ],
)
def test_a_string_postgres_cannot_store_is_a_422_naming_the_field(client, team, run_input, field):
    """NUL (and an unpaired surrogate) in a run's input: PostgreSQL refuses them in jsonb, so the API does first."""
    _, key = team
    error = assert_error(client.post("/api/runs", headers=auth(key), json=run_input), 422, "invalid_input")
    assert error["details"][0]["field"] == field
    assert runs_of(client, key) == []


def test_a_nul_in_the_ui_form_is_shown_on_the_form(client, team):
    _, key = team
    csrf = sign_in(client, key)
    resp = client.post(
        "/runs/new", data={"workflow": "research", "question": "What is\x00 Celery?", "csrf_token": csrf}
    )
    assert resp.status_code == 422 and b"Question contains a character that cannot be stored" in resp.data
    assert runs_of(client, key) == []


@pytest.mark.parametrize("number", ["Infinity", "-Infinity", "NaN", "1e999", "-1e999"])
def test_non_finite_numbers_are_a_400(client, team, number):
    """Python's JSON parser accepts these; PostgreSQL's jsonb does not: the parser refuses them."""
    _, key = team
    for field in ("run_timeout_s", "max_steps"):
        limits = f'{{"{field}": {number}}}'
        body = '{"workflow": "summarize", "input": {"text": "x"}, "options": {"limits": ' + limits + "}}"
        error = assert_error(
            client.post("/api/runs", headers=auth(key), data=body, content_type="application/json"), 400, "invalid_json"
        )
        assert "finite" in error["message"]
    assert runs_of(client, key) == []


@pytest.mark.parametrize("depth", [40, 3_000, 100_000])
def test_deeply_nested_json_is_a_400(client, team, depth):
    _, key = team
    body = '{"workflow": "summarize", "input": {"text": "x", "extra": ' + "[" * depth + "]" * depth + "}}"
    error = assert_error(
        client.post("/api/runs", headers=auth(key), data=body, content_type="application/json"), 400, "invalid_json"
    )
    assert "nested" in error["message"]
    shallow = '{"workflow": "summarize", "input": {"text": "x", "extra": [[[1]]]}}'
    # Parsed: refused by the workflow's input schema (no field "extra"), not by the parser.
    refused = assert_error(
        client.post("/api/runs", headers=auth(key), data=shallow, content_type="application/json"), 422, "invalid_input"
    )
    assert "extra" in refused["details"][0]["message"]


def test_a_garbage_cursor_on_the_ui_is_a_400_page(client, team):
    _, key = team
    sign_in(client, key)
    assert client.get("/?cursor=garbage").status_code == 400
    assert client.get("/").status_code == 200


@pytest.mark.parametrize("value", [str(2**63), "99999999999999999999999", "-1", "1_000", "\u0661\u0662", " 7 "])
def test_a_last_event_id_that_is_not_an_event_id_is_a_400(client, team, value, queued_run):
    """Beyond a bigint it answered 200, then the stream died ("bigint out of range")."""
    team_id, key = team
    run_id = queued_run(team_id)
    url = f"/api/runs/{run_id}/events"
    assert_error(client.get(url, headers={**auth(key), "Last-Event-ID": value}), 400, "invalid_last_event_id")
    assert_error(
        client.get(url, headers=auth(key), query_string={"last_event_id": value}), 400, "invalid_last_event_id"
    )


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
        assert_error(
            client.get("/_test/failing-statement", headers={"Accept": "application/json"}), 500, "internal_error"
        )
    finally:
        root.removeHandler(handler)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    logged = [line for line in lines if line["logger"] == "web.errors"]
    assert logged and "division by zero" in logged[0]["message"] and "22012" in logged[0]["message"]
    assert secret not in out.getvalue()


# -- item 4: input that was accepted and should not be -------------------------------------


@pytest.mark.parametrize(
    "run_input, field",
    [
        ({"workflow": "research", "input": {"question": "   \n\t  "}}, "question"),
        ({"workflow": "summarize", "input": {"text": " \n "}}, "text"),
    ],
)
def test_blank_text_is_a_422(client, team, run_input, field):
    """A whitespace-only question started a full research run (it costs money on real Gemini)."""
    _, key = team
    error = assert_error(client.post("/api/runs", headers=auth(key), json=run_input), 422, "invalid_input")
    assert error["details"] == [{"field": field, "message": "must not be blank"}]
    assert runs_of(client, key) == []


def test_text_is_stored_without_surrounding_whitespace(client, team):
    _, key = team
    resp = client.post("/api/runs", headers=auth(key), json={"workflow": "summarize", "input": {"text": "  hi \n"}})
    assert client.get(resp.json["links"]["self"], headers=auth(key)).json["input"] == {"text": "hi"}


def test_summarize_refuses_more_text_than_the_summarizer_reads(client, team):
    """90,000 characters were accepted and 12,017 sent: now over the limit is a 422 that says it."""
    most = example("summarize").input_schema["properties"]["text"]["maxLength"]
    _, key = team
    too_long = {"workflow": "summarize", "input": {"text": "y" * (most + 1)}}
    error = assert_error(client.post("/api/runs", headers=auth(key), json=too_long), 422, "invalid_input")
    assert error["details"][0]["field"] == "text" and f"{most:,}" in error["details"][0]["message"]
    assert (
        client.post(
            "/api/runs", headers=auth(key), json={"workflow": "summarize", "input": {"text": "y" * most}}
        ).status_code
        == 202
    )
    schema = {w["name"]: w for w in client.get("/api/workflows", headers=auth(key)).json["workflows"]}
    assert schema["summarize"]["input_schema"]["properties"]["text"]["maxLength"] == most


def test_the_ui_form_is_validated_like_the_api(client, team):
    """priority=bogus was stored from the form (the API refused it)."""
    _, key = team
    csrf = sign_in(client, key)
    resp = client.post(
        "/runs/new", data={"workflow": "summarize", "text": "Some text.", "priority": "bogus", "csrf_token": csrf}
    )
    assert resp.status_code == 422 and b"Choose one of the two priorities." in resp.data
    resp = client.post("/runs/new", data={"workflow": "research", "question": "   ", "csrf_token": csrf})
    assert resp.status_code == 422 and b"Question cannot be blank: please fill it in." in resp.data
    assert runs_of(client, key) == []
    ok = client.post(
        "/runs/new", data={"workflow": "summarize", "text": "Some text.", "priority": "interactive", "csrf_token": csrf}
    )
    assert ok.status_code == 302
    (run,) = runs_of(client, key)
    assert client.get(run["links"]["self"], headers=auth(key)).json["options"]["priority"] == "interactive"


def test_the_ui_form_meets_the_same_backpressure_as_the_api(settings, team, monkeypatch, queued_run):
    from taskapp.pipeline import intake, orchestrator
    from taskapp.store.db import session_factory
    from web import create_app

    team_id, key = team
    waiting = queued_run(team_id)
    monkeypatch.setattr(intake, "_waiting", intake.WaitingWork())  # a first count of its own, taken now
    client = create_app(settings.model_copy(update={"max_waiting_work": 1})).test_client()
    try:
        csrf = sign_in(client, key)
        resp = client.post("/runs/new", data={"workflow": "summarize", "text": "Some text.", "csrf_token": csrf})
        assert resp.status_code == 429 and b"try again" in resp.data
        assert [r["id"] for r in runs_of(client, key)] == [str(waiting)]
    finally:
        with session_factory(settings).begin() as session:
            orchestrator.cancel_run(session, waiting)


def test_the_same_idempotency_key_with_another_body_is_a_409(client, team):
    """It silently returned the first run; now a key reused for something else is a conflict."""
    _, key = team
    h = {**auth(key), "Idempotency-Key": f"order-{uuid.uuid4()}"}
    first = client.post("/api/runs", headers=h, json=RUN)
    assert first.status_code == 202
    error = assert_error(
        client.post("/api/runs", headers=h, json={**RUN, "input": {"text": "Other text."}}), 409, "idempotency_conflict"
    )
    assert error["details"] == {"run_id": first.json["id"]}
    assert_error(
        client.post("/api/runs", headers=h, json={**RUN, "options": {"priority": "interactive"}}),
        409,
        "idempotency_conflict",
    )
    # The same request, spelt differently (key order, spacing, defaults written out): the same run.
    same = (
        '{"options": {"limits": {}, "priority": "batch"},  "input": {"text": "Some text to summarise.  "},'
        ' "workflow": "summarize"}'
    )
    replay = client.post("/api/runs", headers=h, data=same, content_type="application/json")
    assert replay.status_code == 202 and replay.json["id"] == first.json["id"] and not replay.json["created"]
    assert len(runs_of(client, key)) == 1


def test_concurrent_duplicates_with_different_bodies_make_one_run(app, team):
    """Ten simultaneous POSTs with one key and two bodies: one run; its body gets it, the other a 409."""
    from concurrent.futures import ThreadPoolExecutor

    _, key = team
    h = {**auth(key), "Idempotency-Key": f"dup-{uuid.uuid4()}"}
    bodies = [{"workflow": "summarize", "input": {"text": f"body {i % 2}"}} for i in range(10)]

    def post(body):
        resp = app.test_client().post("/api/runs", headers=h, json=body)
        return body["input"]["text"], resp.status_code, resp.json

    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(post, bodies))
    made = [a for _, status, a in answers if status == 202]
    assert len({a["id"] for a in made}) == 1 and sum(1 for a in made if a["created"]) == 1
    winner = next(text for text, status, a in answers if status == 202 and a["created"])
    for text, status, answer in answers:
        assert status == (202 if text == winner else 409), (text, status, answer)
    assert len(app.test_client().get("/api/runs", headers=auth(key)).json["runs"]) == 1


def test_an_idempotency_key_must_be_printable_ascii(client, team):
    _, key = team
    for bad in ("a\x00b", "tab\there", "é" * 3, "x" * 201):
        assert_error(
            client.post("/api/runs", headers={**auth(key), "Idempotency-Key": bad}, json=RUN),
            400,
            "invalid_idempotency_key",
        )
    assert runs_of(client, key) == []

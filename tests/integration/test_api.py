"""The JSON API: authentication, team scoping, validation, idempotency, pagination, health."""

from __future__ import annotations

import threading
import time
import uuid

from tests.helpers import auth, form_token, make_team, ui_login

RUN = {"workflow": "summarize", "input": {"text": "Some text to summarise."}}


def test_requests_without_a_valid_key_are_401(client):
    """No key, a malformed header, or an unknown key: 401 with a JSON error."""
    assert client.get("/api/runs").status_code == 401
    assert client.get("/api/runs", headers={"Authorization": "Basic abc"}).status_code == 401
    resp = client.get("/api/runs", headers=auth("tk_not-a-real-key"))
    assert resp.status_code == 401 and resp.json["error"]["code"] == "unauthorized"


def test_submit_returns_202_with_links_and_stores_a_queued_run(client, team, db_session):
    """POST /api/runs answers 202 with id, status and links; the run and its first event are stored."""
    from taskapp.store.models import Event, Run

    _, key = team
    resp = client.post("/api/runs", headers=auth(key), json=RUN)
    assert resp.status_code == 202
    body = resp.json
    assert body["status"] == "queued" and body["links"]["self"] == f"/api/runs/{body['id']}"
    assert body["links"]["events"].endswith("/events") and resp.headers["Location"] == body["links"]["self"]
    run = db_session.get(Run, uuid.UUID(body["id"]))
    assert run.workflow == "summarize" and run.input == RUN["input"]
    assert [e.type for e in db_session.query(Event).filter_by(run_id=run.id)][0] == "run.queued"


def test_submitting_from_a_new_thread_builds_no_result_backend(client, team):
    """The start message's result is never read, and no thread builds a result backend of its own.

    Celery keeps one per thread unless told it is thread safe (a greenlet per connection
    under gevent), and building one costs 7-35 ms: it was the enqueue latency's tail.
    """
    from taskapp.celery_app import app as celery_app

    _, key = team
    shared = celery_app.backend
    seen = []

    def submit() -> None:  # in a thread of its own, as a new connection's greenlet would be
        seen.append(client.post("/api/runs", headers=auth(key), json=RUN).status_code)
        seen.append(celery_app.backend is shared)

    for _ in range(2):
        thread = threading.Thread(target=submit)
        thread.start()
        thread.join()
    assert seen == [202, True, 202, True]


def test_bad_requests_get_clear_4xx_errors(client, team):
    """Bad JSON, unknown fields, unknown workflows and invalid input are 4xx with details, never 500."""
    _, key = team
    h = auth(key)
    cases = [
        (client.post("/api/runs", headers=h, data="{not json", content_type="application/json"), 400, "invalid_json"),
        (client.post("/api/runs", headers=h, json=[1, 2]), 400, "invalid_json"),
        (client.post("/api/runs", headers=h, json={"workflow": "summarize"}), 422, "invalid_request"),
        (client.post("/api/runs", headers=h, json={**RUN, "surprise": 1}), 422, "invalid_request"),
        (client.post("/api/runs", headers=h, json={"workflow": "nope", "input": {}}), 422, "invalid_input"),
        (
            client.post("/api/runs", headers=h, json={"workflow": "research", "input": {"question": ""}}),
            422,
            "invalid_input",
        ),
        (client.post("/api/runs", headers=h, json={**RUN, "options": {"priority": "asap"}}), 422, "invalid_request"),
        (client.get("/api/runs?status=weird", headers=h), 400, "invalid_status"),
        (client.get("/api/runs?cursor=garbage", headers=h), 400, "invalid_cursor"),
        (client.get("/api/runs/not-a-uuid", headers=h), 404, "not_found"),
        (client.get("/api/nothing-here", headers=h), 404, "not_found"),
    ]
    for resp, status, code in cases:
        assert resp.status_code == status, (code, resp.json)
        assert resp.json["error"]["code"] == code
        assert resp.json["error"]["message"]
    detail = client.post("/api/runs", headers=h, json={"workflow": "research", "input": {"question": ""}}).json
    assert detail["error"]["details"][0]["field"] == "question"


def test_a_team_never_sees_another_teams_run(client, settings):
    """Another team's run is a 404 (as if it did not exist) and absent from its list."""
    _, key_a = make_team(settings)
    _, key_b = make_team(settings)
    run_id = client.post("/api/runs", headers=auth(key_a), json=RUN).json["id"]
    assert client.get(f"/api/runs/{run_id}", headers=auth(key_a)).status_code == 200
    assert client.get(f"/api/runs/{run_id}", headers=auth(key_b)).status_code == 404
    assert client.post(f"/api/runs/{run_id}/cancel", headers=auth(key_b)).status_code == 404
    assert client.get("/api/runs", headers=auth(key_b)).json["runs"] == []


def test_same_idempotency_key_returns_the_same_run(client, team):
    """A retried POST with the same Idempotency-Key gets the first run back, not a second one."""
    _, key = team
    h = {**auth(key), "Idempotency-Key": "order-42"}
    first = client.post("/api/runs", headers=h, json=RUN).json
    second = client.post("/api/runs", headers=h, json=RUN).json
    assert first["id"] == second["id"] and first["created"] and not second["created"]
    assert len(client.get("/api/runs", headers=auth(key)).json["runs"]) == 1


def test_runs_list_is_newest_first_filtered_and_paginated(client, team):
    """Cursor pagination visits every run once, newest first; status filters."""
    _, key = team
    ids = [client.post("/api/runs", headers=auth(key), json=RUN).json["id"] for _ in range(5)]
    seen, cursor = [], None
    while True:
        page = client.get(
            "/api/runs", headers=auth(key), query_string={"limit": 2, **({"cursor": cursor} if cursor else {})}
        ).json
        seen += [r["id"] for r in page["runs"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(ids))
    assert client.get("/api/runs?status=succeeded", headers=auth(key)).json["runs"] == []


def test_cancel_ends_a_run_that_has_not_started(client, team, settings):
    """Cancelling a stored, not yet started run ends it as cancelled, with an event; a second cancel is a no-op."""
    from taskapp.store.db import session_factory
    from taskapp.store.runs import create_run

    team_id, key = team
    with session_factory(settings).begin() as session:  # stored but never published: no worker can race us
        run, _ = create_run(session, team_id=team_id, workflow="summarize", input=RUN["input"], options={})
    resp = client.post(f"/api/runs/{run.id}/cancel", headers=auth(key))
    assert resp.status_code == 202 and resp.json["status"] == "cancelled"
    again = client.post(f"/api/runs/{run.id}/cancel", headers=auth(key))
    assert again.json["status"] == "cancelled"
    with session_factory(settings)() as session:
        from taskapp.store.models import Event

        types = [e.type for e in session.query(Event).filter_by(run_id=run.id).order_by(Event.id)]
    assert types == ["run.queued", "run.cancelled"]


def test_workflows_are_listed_with_agents_and_input_schema(client, team):
    """GET /api/workflows describes what can be run."""
    _, key = team
    wfs = {w["name"]: w for w in client.get("/api/workflows", headers=auth(key)).json["workflows"]}
    assert [a["name"] for a in wfs["research"]["agents"]] == ["planner", "researcher", "writer", "reviewer"]
    assert "question" in wfs["research"]["input_schema"]["properties"]


def test_healthz_is_up_and_readyz_checks_every_dependency(client):
    """/healthz is up; /readyz checks Postgres, Redis and the broker."""
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.json
    assert ready.json["checks"] == {"postgres": "ok", "redis": "ok", "broker": "ok"}


def test_ui_sign_in_submit_and_view(client, team):
    """The browser flow: sign in with the key, submit the form, land on the run page."""
    _, key = team
    assert client.get("/").status_code == 302
    assert b"Unknown" in ui_login(client, "tk_wrong").data
    assert ui_login(client, key).status_code == 302
    form = client.get("/runs/new?workflow=research")
    assert b'name="question"' in form.data
    csrf = form_token(form.data)
    resp = client.post(
        "/runs/new",
        data={"workflow": "research", "question": "What is Celery?", "max_revisions": "1", "csrf_token": csrf},
    )
    assert resp.status_code == 302 and "/runs/" in resp.headers["Location"]
    page = client.get(resp.headers["Location"])
    assert page.status_code == 200 and b"What is Celery?" in page.data
    assert b"What is Celery?" not in client.get("/runs/new").data  # no leak of old form values
    # The session cookie reads the API but cannot write without the CSRF token.
    run_id = resp.headers["Location"].rsplit("/", 1)[1]
    assert client.get(f"/api/runs/{run_id}").status_code == 200
    refused = client.post("/api/runs", json=RUN)
    assert refused.status_code == 403 and refused.json["error"]["code"] == "csrf_failed"
    assert client.post("/api/runs", json=RUN, headers={"X-CSRF-Token": ""}).status_code == 403
    assert client.post("/api/runs", json=RUN, headers={"X-CSRF-Token": csrf}).status_code == 202
    assert client.post("/runs/new", data={"workflow": "summarize", "text": "x"}).status_code == 400


def test_concurrent_duplicate_idempotency_keys_make_one_run(app, team):
    """Ten simultaneous POSTs with one Idempotency-Key: one run, and every answer names it."""
    from concurrent.futures import ThreadPoolExecutor

    _, key = team
    h = {**auth(key), "Idempotency-Key": f"dup-{uuid.uuid4()}"}

    def post(_):
        return app.test_client().post("/api/runs", headers=h, json=RUN).json

    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(post, range(10)))
    assert len({a["id"] for a in answers}) == 1
    assert sum(1 for a in answers if a["created"]) == 1


def test_backpressure_refuses_new_runs_with_429_but_answers_replays(settings, team, monkeypatch):
    """Past MAX_WAITING_WORK the API says 429 + Retry-After and stores nothing; a replay of a
    stored run (its Idempotency-Key) is still answered."""
    from datetime import UTC, datetime, timedelta

    from taskapp.pipeline import intake, orchestrator
    from taskapp.store.db import session_factory
    from taskapp.store.runs import create_run
    from web import create_app

    team_id, key = team
    with session_factory(settings).begin() as session:  # one run waiting (dated ahead: the sweeper leaves it)
        waiting, _ = create_run(
            session,
            team_id=team_id,
            workflow="summarize",
            input={"text": "w"},
            options={},
            idempotency_key="already-stored",
        )
        waiting.created_at = datetime.now(UTC) + timedelta(hours=1)
    monkeypatch.setattr(intake, "_waiting", intake.WaitingWork())  # a first count of its own, taken now
    client = create_app(settings.model_copy(update={"max_waiting_work": 1})).test_client()
    try:
        refused = client.post("/api/runs", headers=auth(key), json={"workflow": "summarize", "input": {"text": "x"}})
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "5"
        assert refused.json["error"]["code"] == "overloaded"
        replay = client.post(
            "/api/runs",
            headers={**auth(key), "Idempotency-Key": "already-stored"},
            json={"workflow": "summarize", "input": {"text": "w"}},
        )
        assert replay.status_code == 202 and replay.json["id"] == str(waiting.id)
        assert len(client.get("/api/runs", headers=auth(key)).json["runs"]) == 1  # nothing else stored
    finally:
        with session_factory(settings).begin() as session:
            orchestrator.cancel_run(session, waiting.id)


def test_the_backpressure_count_is_refreshed_off_the_request_path(settings):
    """A stale count is answered at once and recounted in the background: no request waits for it."""
    from sqlalchemy import text

    from taskapp.pipeline import intake
    from taskapp.store.db import session_factory

    factory = session_factory(settings)
    counter = intake.WaitingWork(max_age_s=0.0)
    with factory() as session:
        counter.get(session)  # no count yet: taken inline
    first_at = counter.counted_at
    blocker = factory()
    try:
        blocker.execute(text("LOCK TABLE runs IN ACCESS EXCLUSIVE MODE"))  # every count must wait now
        with factory() as session:
            session.execute(text("SET LOCAL lock_timeout = '2s'"))  # an inline count would fail, not hang
            assert isinstance(counter.get(session), int)  # answered from the count in hand
        assert counter.counted_at == first_at  # the recount is waiting on the lock, in the background
    finally:
        blocker.rollback()
        blocker.close()
    deadline = time.monotonic() + 5
    while counter.counted_at == first_at:
        assert time.monotonic() < deadline, "the background recount never landed"
        time.sleep(0.05)

"""SSE: each event once, in order, live or resumed with Last-Event-ID, with or without Redis."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import select

from taskapp.store.models import Event
from tests.helpers import auth, make_team, wait_for_run

pytestmark = pytest.mark.slow
RUN = {"workflow": "research", "input": {"question": "What is an event stream?", "max_revisions": 1}}


def parse_sse(body: bytes) -> list[dict]:
    """The events of an SSE body (comments and retry lines skipped)."""
    events = []
    for block in body.decode().split("\n\n"):
        fields: dict = {}
        for line in block.splitlines():
            if line.startswith(":") or ":" not in line:
                continue
            name, _, value = line.partition(":")
            fields[name] = fields.get(name, "") + value.lstrip(" ") if name == "data" else value.lstrip(" ")
        if "id" in fields:
            events.append({"id": int(fields["id"]), "type": fields.get("event"), "data": json.loads(fields["data"])})
    return events


def stored(db_session, run_id) -> list[tuple[int, str]]:
    db_session.rollback()
    rows = db_session.execute(select(Event.id, Event.type).where(Event.run_id == uuid.UUID(str(run_id)))
                              .order_by(Event.id)).all()
    return [(i, t) for i, t in rows]


def stream(client, key, run_id, **kw) -> list[dict]:
    resp = client.get(f"/api/runs/{run_id}/events", headers={**auth(key), **kw.pop("headers", {})}, **kw)
    assert resp.status_code == 200 and resp.mimetype == "text/event-stream"
    return parse_sse(b"".join(resp.response))


def test_live_stream_follows_a_run_to_its_end(client, team, workers, db_session):
    """Opened as the run starts: every event arrives once, in order, then the stream ends."""
    _, key = team
    run_id = client.post("/api/runs", headers=auth(key), json=RUN).json["id"]
    got = stream(client, key, run_id)
    assert [(e["id"], e["type"]) for e in got] == stored(db_session, run_id)
    assert got[0]["type"] == "run.queued" and got[-1]["type"] == "run.succeeded"
    step_events = [e for e in got if e["type"].startswith("step.")]
    assert all({"run_id", "ts", "step_id", "seq", "agent"} <= e["data"].keys() for e in step_events)


def test_resume_with_last_event_id_sends_only_what_was_missed(client, team, workers, settings, db_session):
    """Reconnecting with Last-Event-ID (header or query) yields each later event exactly once, in order."""
    _, key = team
    run_id = client.post("/api/runs", headers=auth(key), json=RUN).json["id"]
    wait_for_run(settings, run_id)
    everything = stored(db_session, run_id)
    cut = everything[3][0]
    by_header = stream(client, key, run_id, headers={"Last-Event-ID": str(cut)})
    by_query = stream(client, key, run_id, query_string={"last_event_id": cut})
    assert [(e["id"], e["type"]) for e in by_header] == everything[4:]
    assert by_query == by_header


def test_stream_without_redis_tails_the_table(team, workers, settings, db_session, client):
    """With Redis pub/sub unreachable the stream still delivers every event, from Postgres."""
    from web import create_app

    no_redis = create_app(settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"}))
    _, key = team
    run_id = client.post("/api/runs", headers=auth(key), json=RUN).json["id"]
    got = stream(no_redis.test_client(), key, run_id)
    assert [(e["id"], e["type"]) for e in got] == stored(db_session, run_id)
    assert got[-1]["type"] == "run.succeeded"


def test_streams_are_scoped_to_the_team_and_validate_last_event_id(client, settings):
    """Another team's run is a 404 on the stream; a non-numeric Last-Event-ID is a 400."""
    _, key_a = make_team(settings)
    _, key_b = make_team(settings)
    run_id = client.post("/api/runs", headers=auth(key_a),
                         json={"workflow": "summarize", "input": {"text": "x"}}).json["id"]
    assert client.get(f"/api/runs/{run_id}/events", headers=auth(key_b)).status_code == 404
    assert client.get(f"/api/runs/{uuid.uuid4()}/events", headers=auth(key_a)).status_code == 404
    bad = client.get(f"/api/runs/{run_id}/events", headers={**auth(key_a), "Last-Event-ID": "abc"})
    assert bad.status_code == 400 and bad.json["error"]["code"] == "invalid_last_event_id"


def test_resume_across_a_web_process_restart(stack, workers, team, settings, db_session):
    """Read part of a live stream, restart gunicorn, reconnect with Last-Event-ID: every event once, in order."""
    import httpx

    _, key = team
    h = auth(key)
    httpx.post(f"{stack.sim_url}/_sim/config", json={"latency_ms": 300})
    try:
        url, web = stack.start_web()
        run_id = httpx.post(f"{url}/api/runs", headers=h, json=RUN).json()["id"]
        first: list[dict] = []
        with httpx.stream("GET", f"{url}/api/runs/{run_id}/events", headers=h, timeout=30) as resp:
            buf = b""
            for chunk in resp.iter_bytes():
                buf += chunk
                first = parse_sse(buf[: buf.rfind(b"\n\n") + 2])
                if len(first) >= 4:
                    break
        stack.stop(web)  # the web process goes away mid-run
        url, web = stack.start_web()
        last = first[-1]["id"]
        with httpx.stream("GET", f"{url}/api/runs/{run_id}/events", headers={**h, "Last-Event-ID": str(last)},
                          timeout=60) as resp:
            rest = parse_sse(resp.read())
        stack.stop(web)
    finally:
        httpx.post(f"{stack.sim_url}/_sim/config", json={"latency_ms": 0})
    got = [(e["id"], e["type"]) for e in first + rest]
    assert got == stored(db_session, run_id)
    assert got[-1][1] == "run.succeeded" and len(set(got)) == len(got)


def _queued_run(settings, team_id):
    """A run that stays open (stored, never published): its stream waits for events.

    Dated an hour ahead, so the workers' sweeper (which starts runs whose start message
    was lost) leaves it alone while the test drives its events by hand.
    """
    from datetime import UTC, datetime, timedelta

    from taskapp.store.db import session_factory
    from taskapp.store.runs import create_run

    with session_factory(settings).begin() as session:
        run, _ = create_run(session, team_id=team_id, workflow="summarize", input={"text": "x"}, options={})
        run.created_at = datetime.now(UTC) + timedelta(hours=1)
    return run.id


def _numsub(client, run_id) -> int:
    from taskapp.store.events import channel_for

    return dict(client.pubsub_numsub(channel_for(run_id)))[channel_for(run_id).encode()]


def _until(predicate, timeout_s: float) -> bool:
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_stream_sends_keepalives_and_releases_its_subscription_when_the_client_leaves(stack, team, settings):
    """An idle stream sends keep-alive comments; when the client goes, its Redis subscription goes too."""
    import httpx
    import redis

    team_id, key = team
    run_id = _queued_run(settings, team_id)
    r = redis.Redis.from_url(stack.redis_url)
    url, web = stack.start_web(SSE_KEEPALIVE_S="0.5")
    try:
        with httpx.stream("GET", f"{url}/api/runs/{run_id}/events", headers=auth(key), timeout=10) as resp:
            seen = b""
            for chunk in resp.iter_bytes():
                seen += chunk
                if b": keep-alive" in seen:
                    break
            assert b"event:run.queued" in seen and b": keep-alive" in seen
            assert _until(lambda: _numsub(r, run_id) == 1, 5)
        assert _until(lambda: _numsub(r, run_id) == 0, 10), "subscription outlived its client"
    finally:
        stack.stop(web)


def test_stream_returns_to_live_when_redis_comes_back(settings, team, tmp_path):
    """Redis down: the stream tails the table; Redis back: it subscribes again and live events wake it."""
    import threading

    import redis

    from taskapp.dev.embedded import EmbeddedRedis
    from taskapp.store import events
    from taskapp.store.db import session_factory
    from web import create_app

    rd = EmbeddedRedis(tmp_path / "redis", persist=False)
    rd.start()
    rd.stop()  # down before the client arrives
    flaky = settings.model_copy(update={"redis_url": rd.url})
    team_id, key = team
    run_id = _queued_run(settings, team_id)
    got: list[dict] = []
    body = bytearray()

    def consume() -> None:
        resp = create_app(flaky).test_client().get(f"/api/runs/{run_id}/events", headers=auth(key),
                                                   buffered=False)
        for chunk in resp.response:
            body.extend(chunk)

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    try:
        assert _until(lambda: b"run.queued" in body, 10)  # replayed from the table while Redis is down
        rd.start()  # the same port comes back
        client = redis.Redis.from_url(rd.url)
        assert _until(lambda: _numsub(client, run_id) == 1, 10), "stream did not resubscribe"
        with session_factory(flaky).begin() as session:
            events.record(session, run_id, "run.started", workflow="summarize")
            events.record(session, run_id, "run.cancelled")
        reader.join(10)
        got = parse_sse(bytes(body))
    finally:
        rd.stop()
    assert [e["type"] for e in got] == ["run.queued", "run.started", "run.cancelled"]


def test_a_runs_events_commit_in_id_order(settings, db_session):
    """A transaction whose events for a run are inserted but not committed holds the run's
    event lock: another transaction's event for the run waits, so it can never be committed
    (and streamed) before the smaller id, which a resumed stream would then skip."""
    import threading
    import time

    from taskapp.store import events
    from taskapp.store.db import session_factory
    from taskapp.store.runs import create_run

    factory = session_factory(settings)
    with factory.begin() as session:
        run_id = create_run(session, team_id=make_team(settings)[0], workflow="summarize",
                                  input={"text": "ordering"}, options={})[0].id
    first = factory()
    committed: list[str] = []

    def second_writer() -> None:
        with factory.begin() as session:
            events.record(session, run_id, "run.started", workflow="summarize")
        committed.append("second")

    try:
        first.begin()
        events.record(first, run_id, "run.cancelled")
        events._insert_pending(first)  # what its commit does first: lock, insert (ids drawn)
        thread = threading.Thread(target=second_writer)
        thread.start()
        time.sleep(0.5)
        assert thread.is_alive() and committed == []  # waiting for the first transaction's lock
        first.commit()
        thread.join(10)
        assert committed == ["second"]
    finally:
        first.close()
    assert [t for _, t in stored(db_session, run_id)][-2:] == ["run.cancelled", "run.started"]

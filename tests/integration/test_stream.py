"""SSE without the workers: team scoping, keep-alives, Redis coming back, events committed in id order.

Runs the workers do, streamed live and resumed: tests/system/test_stream.py."""

from __future__ import annotations

import uuid

from tests.helpers import auth, make_team, parse_sse, stored_events


def test_streams_are_scoped_to_the_team_and_validate_last_event_id(client, settings):
    """Another team's run is a 404 on the stream; a non-numeric Last-Event-ID is a 400."""
    _, key_a = make_team(settings)
    _, key_b = make_team(settings)
    run_id = client.post("/api/runs", headers=auth(key_a), json={"workflow": "summarize", "input": {"text": "x"}}).json[
        "id"
    ]
    assert client.get(f"/api/runs/{run_id}/events", headers=auth(key_b)).status_code == 404
    assert client.get(f"/api/runs/{uuid.uuid4()}/events", headers=auth(key_a)).status_code == 404
    bad = client.get(f"/api/runs/{run_id}/events", headers={**auth(key_a), "Last-Event-ID": "abc"})
    assert bad.status_code == 400 and bad.json["error"]["code"] == "invalid_last_event_id"


def _numsub(client, run_id) -> int:
    from taskapp.keys import run_channel as channel_for

    return dict(client.pubsub_numsub(channel_for(run_id)))[channel_for(run_id).encode()]


def _until(predicate, timeout_s: float) -> bool:
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_stream_sends_keepalives_and_releases_its_subscription_when_the_client_leaves(stack, team, queued_run):
    """An idle stream sends keep-alive comments; when the client goes, its Redis subscription goes too."""
    import httpx
    import redis

    team_id, key = team
    run_id = queued_run(team_id)
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


def test_stream_returns_to_live_when_redis_comes_back(settings, team, tmp_path, queued_run):
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
    run_id = queued_run(team_id)
    got: list[dict] = []
    body = bytearray()

    def consume() -> None:
        resp = create_app(flaky).test_client().get(f"/api/runs/{run_id}/events", headers=auth(key), buffered=False)
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
        run_id = create_run(
            session, team_id=make_team(settings)[0], workflow="summarize", input={"text": "ordering"}, options={}
        )[0].id
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
    assert [t for _, t in stored_events(db_session, run_id)][-2:] == ["run.cancelled", "run.started"]

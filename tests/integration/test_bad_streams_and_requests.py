"""Bad input on the way in and on a stream: a resumed stream never hangs, another team's stream
stays hidden, and what gunicorn itself refuses comes back as a status a client can read."""

from __future__ import annotations

import socket
import threading

from tests.helpers import assert_error, auth, make_team


def _final_event_id(settings, run_id) -> int:
    from sqlalchemy import func, select

    from taskapp.store.db import session_factory
    from taskapp.store.models import Event

    with session_factory(settings)() as session:
        return session.scalar(select(func.max(Event.id)).where(Event.run_id == run_id))


def test_reconnecting_after_a_finished_runs_final_event_ends_at_once(client, settings, team, queued_run):
    """It waited forever on keep-alives; now a 204, which tells an EventSource not to reconnect."""
    from taskapp.pipeline import orchestrator
    from taskapp.store.db import session_factory

    team_id, key = team
    run_id = queued_run(team_id)
    with session_factory(settings).begin() as session:
        orchestrator.cancel_run(session, run_id)
    final = _final_event_id(settings, run_id)
    url = f"/api/runs/{run_id}/events"
    for resume in (
        {"headers": {**auth(key), "Last-Event-ID": str(final)}},
        {"headers": auth(key), "query_string": {"last_event_id": final + 1000}},
    ):
        resp = client.get(url, **resume)
        assert resp.status_code == 204 and resp.data == b""
    before = client.get(url, headers={**auth(key), "Last-Event-ID": str(final - 1)})  # one event still to send
    assert before.status_code == 200 and b"event:run.cancelled" in b"".join(before.response)


def test_a_stream_resumed_past_the_end_of_a_live_run_ends_with_the_run(settings, team, queued_run):
    """A Last-Event-ID beyond a live run's events: when the run ends (its final event has a
    smaller id than the client's), the stream ends too instead of sending keep-alives forever."""
    from taskapp.pipeline import orchestrator
    from taskapp.store.db import session_factory
    from web import create_app

    team_id, key = team
    run_id = queued_run(team_id)
    ahead = _final_event_id(settings, run_id) + 1_000_000
    body = bytearray()
    client = create_app(settings).test_client()

    def consume() -> None:
        resp = client.get(
            f"/api/runs/{run_id}/events", headers={**auth(key), "Last-Event-ID": str(ahead)}, buffered=False
        )
        for chunk in resp.response:
            body.extend(chunk)

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    reader.join(1.0)
    assert reader.is_alive()  # the run is live: the stream waits for it
    with session_factory(settings).begin() as session:
        orchestrator.cancel_run(session, run_id)
    reader.join(10)
    assert not reader.is_alive(), "the stream outlived its run"
    assert b"event:" not in body


def test_streams_of_other_teams_stay_hidden(client, settings, queued_run):
    """Unchanged: another team's stream is a 404 whatever Last-Event-ID says."""
    team_a, key_a = make_team(settings)
    _, key_b = make_team(settings)
    run_id = queued_run(team_a)
    assert_error(
        client.get(f"/api/runs/{run_id}/events", headers={**auth(key_b), "Last-Event-ID": "1"}), 404, "not_found"
    )


def _raw_http(url: str, head: bytes) -> tuple[int, bytes]:
    """Send a request's head as bytes (http clients refuse to send bad ones); its status and headers."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(head)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    status_line, _, headers = answer.partition(b"\r\n\r\n")[0].partition(b"\r\n")
    return int(status_line.split()[1]), headers.lower()


def test_gunicorn_limits_are_the_documented_ones_and_answer_a_readable_status(stack):
    """What gunicorn refuses before the app: a plain status and Connection: close, never a dropped
    connection; up to the stated limits (8,190-byte request and header lines) the app answers."""
    url, web = stack.start_web()
    try:

        def get(target: bytes, *headers: bytes) -> tuple[int, bytes]:
            lines = [b"GET " + target + b" HTTP/1.1", b"Host: x", *headers]
            return _raw_http(url, b"".join(line + b"\r\n" for line in lines) + b"\r\n")

        assert get(b"/healthz")[0] == 200
        assert get(b"/healthz?pad=" + b"p" * 6000)[0] == 200  # past gunicorn's default of 4,094 bytes
        status, headers = get(b"/healthz?pad=" + b"p" * 8200)
        assert status == 414 and b"connection: close" in headers
        assert get(b"/healthz", b"X-Pad: " + b"p" * 8000)[0] == 200
        assert get(b"/healthz", b"X-Pad: " + b"p" * 8200)[0] == 431
        assert get(b"/healthz", *(b"X-H%d: 1" % i for i in range(99)))[0] == 200  # with Host: 100
        assert get(b"/healthz", *(b"X-H%d: 1" % i for i in range(100)))[0] == 431
        assert get(b"/api/runs", b"Idempotency-Key: a\x00b")[0] == 400
        assert get(b"/api/runs", b"X-Thing: a\x01b")[0] == 400
    finally:
        stack.stop(web)

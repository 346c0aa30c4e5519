"""SSE on a run the workers do: each event once, in order, live or resumed with Last-Event-ID,
with or without Redis, across a web process restart."""

from __future__ import annotations

from tests.helpers import auth, parse_sse, stored_events, wait_for_run

RUN = {"workflow": "research", "input": {"question": "What is an event stream?", "max_revisions": 1}}


def stream(client, key, run_id, **kw) -> list[dict]:
    resp = client.get(f"/api/runs/{run_id}/events", headers={**auth(key), **kw.pop("headers", {})}, **kw)
    assert resp.status_code == 200 and resp.mimetype == "text/event-stream"
    return parse_sse(b"".join(resp.response))


def test_live_stream_follows_a_run_to_its_end(client, team, workers, db_session):
    """Opened as the run starts: every event arrives once, in order, then the stream ends."""
    _, key = team
    run_id = client.post("/api/runs", headers=auth(key), json=RUN).json["id"]
    got = stream(client, key, run_id)
    assert [(e["id"], e["type"]) for e in got] == stored_events(db_session, run_id)
    assert got[0]["type"] == "run.queued" and got[-1]["type"] == "run.succeeded"
    step_events = [e for e in got if e["type"].startswith("step.")]
    assert all({"run_id", "ts", "step_id", "seq", "agent"} <= e["data"].keys() for e in step_events)


def test_resume_with_last_event_id_sends_only_what_was_missed(client, team, workers, settings, db_session):
    """Reconnecting with Last-Event-ID (header or query) yields each later event exactly once, in order."""
    _, key = team
    run_id = client.post("/api/runs", headers=auth(key), json=RUN).json["id"]
    wait_for_run(settings, run_id)
    everything = stored_events(db_session, run_id)
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
    assert [(e["id"], e["type"]) for e in got] == stored_events(db_session, run_id)
    assert got[-1]["type"] == "run.succeeded"


def test_a_stream_resumes_across_a_web_process_restart(stack, workers, team, settings, db_session):
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
        with httpx.stream(
            "GET", f"{url}/api/runs/{run_id}/events", headers={**h, "Last-Event-ID": str(last)}, timeout=60
        ) as resp:
            rest = parse_sse(resp.read())
        stack.stop(web)
    finally:
        httpx.post(f"{stack.sim_url}/_sim/config", json={"latency_ms": 0})
    got = [(e["id"], e["type"]) for e in first + rest]
    assert got == stored_events(db_session, run_id)
    assert got[-1][1] == "run.succeeded" and len(set(got)) == len(got)

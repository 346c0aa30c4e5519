"""A run submitted through the API flows through real workers, the SDK and Postgres to the end."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import func, select

from taskapp.store.models import Event, LlmCall, Step
from tests.helpers import auth, form_token, ui_login, wait_for_run


def test_research_run_finishes_with_every_step_stored(client, team, workers, settings, db_session, stack):
    """planner -> researchers -> writer <-> reviewer: every step succeeds, is billed once, emits events."""
    _, key = team
    sim_before = len(stack.sim.state.requests())
    resp = client.post(
        "/api/runs", headers=auth(key), json={"workflow": "research", "input": {"question": "Why is the sky blue?"}}
    )
    assert resp.status_code == 202, resp.json
    run_id = resp.json["id"]

    run = wait_for_run(settings, run_id)
    assert run.status == "succeeded", run.error
    agents = [s.agent for s in run.steps]
    assert agents[0] == "planner"
    n_research = len(run.steps[0].output["sub_questions"])
    assert agents[1 : 1 + n_research] == ["researcher"] * n_research
    assert agents[1 + n_research] == "writer" and agents[-1] == "reviewer"
    assert all(s.status == "succeeded" and s.output for s in run.steps)
    assert [s.seq for s in run.steps] == list(range(1, len(run.steps) + 1))
    # Each researcher answered its own sub-question (answers never mixed up).
    for step in run.steps[1 : 1 + n_research]:
        assert step.input["sub_question"][:40] in step.output["findings"]
    assert run.output["answer"] and run.output["title"]
    assert run.output["revisions"] == sum(1 for a in agents if a == "writer") - 1

    calls = db_session.scalars(select(LlmCall).where(LlmCall.id.in_([s.llm_call_id for s in run.steps]))).all()
    # The researchers are queued together, so they share one batch and one call.
    research_batches = {s.batch_id for s in run.steps if s.agent == "researcher"}
    assert len(research_batches) == 1 and None not in research_batches
    assert len(calls) == len(run.steps) - n_research + 1
    assert sum(c.tokens_in for c in calls) == sum(s.tokens_in for s in run.steps) > 0
    assert all(c.cost_usd > 0 for c in calls)
    assert len(stack.sim.state.requests()) - sim_before >= len(calls)

    types = db_session.scalars(select(Event.type).where(Event.run_id == run.id).order_by(Event.id)).all()
    assert types[0] == "run.queued" and types[1] == "run.started" and types[-1] == "run.succeeded"
    assert (
        types.count("step.queued")
        == types.count("step.batched")
        == types.count("step.started")
        == types.count("step.succeeded")
        == len(run.steps)
    )

    detail = client.get(f"/api/runs/{run_id}", headers=auth(key)).json
    assert detail["status"] == "succeeded"
    assert detail["totals"]["steps"] == len(run.steps) == detail["totals"]["steps_done"]
    assert detail["totals"]["tokens_in"] == sum(s.tokens_in for s in run.steps)
    assert detail["totals"]["cost_usd"] > 0
    assert detail["output"]["answer"] == run.output["answer"]


def test_many_runs_at_once_all_finish(client, team, workers, settings, db_session):
    """Twenty summarize runs submitted together all end succeeded, one step each."""
    _, key = team
    ids = []
    for i in range(20):
        resp = client.post(
            "/api/runs",
            headers=auth(key),
            json={"workflow": "summarize", "input": {"text": f"Document number {i}. " * 20}},
        )
        assert resp.status_code == 202
        ids.append(resp.json["id"])
    for run_id in ids:
        run = wait_for_run(settings, run_id)
        assert run.status == "succeeded", run.error
        assert run.output["summary"]
    steps = db_session.scalar(
        select(func.count()).select_from(Step).where(Step.run_id.in_([uuid.UUID(i) for i in ids]))
    )
    assert steps == 20


def test_redelivered_start_does_not_duplicate_steps(client, team, workers, settings, db_session):
    """Publishing start_run again for a finished run changes nothing (idempotent orchestration)."""
    from taskapp.pipeline import intake

    _, key = team
    run_id = client.post(
        "/api/runs", headers=auth(key), json={"workflow": "summarize", "input": {"text": "hello"}}
    ).json["id"]
    wait_for_run(settings, run_id)
    before = db_session.scalar(select(func.count()).select_from(Event).where(Event.run_id == uuid.UUID(run_id)))
    intake.publish_start(uuid.UUID(run_id))
    intake.publish_start(uuid.UUID(run_id))
    import time

    time.sleep(1.5)
    after = db_session.scalar(select(func.count()).select_from(Event).where(Event.run_id == uuid.UUID(run_id)))
    steps = db_session.scalar(select(func.count()).select_from(Step).where(Step.run_id == uuid.UUID(run_id)))
    assert after == before and steps == 1


def test_metrics_report_what_the_workers_did(team, workers, settings):
    """/api/metrics, /metrics (Prometheus) and the dashboard agree with the runs just made; queue
    depths are for operators (METRICS_TOKEN)."""
    from web import create_app

    token = "operator-" + "m" * 32
    client = create_app(settings.model_copy(update={"metrics_token": token})).test_client()
    _, key = team
    run_id = client.post(
        "/api/runs", headers=auth(key), json={"workflow": "summarize", "input": {"text": "metrics please"}}
    ).json["id"]
    assert wait_for_run(settings, run_id).status == "succeeded"
    body = client.get("/api/metrics", headers=auth(key)).json
    summarizer = next(a for a in body["agents"] if a["agent"] == "summarizer")
    assert summarizer["steps"] >= 1 and summarizer["batches"] >= 1 and summarizer["cost_usd"] > 0
    assert summarizer["latency_p50_ms"] is not None and summarizer["mean_batch_size"] >= 1
    reasons = summarizer["batches_by_reason"]
    assert sum(reasons.values()) == summarizer["batches"] and set(reasons) <= {"full", "window", "idle", "interactive"}
    assert body["quota_use"]["gemini-2.5-flash-lite"]["requests_last_day"] >= 1
    assert body["runs"]["succeeded"] >= 1 and "queues" not in body
    assert "orchestration" in client.get("/api/metrics", headers=auth(token)).json["queues"]
    assert client.get("/api/metrics?window_s=abc", headers=auth(key)).status_code == 400

    assert client.get("/metrics").status_code == 401
    prom = client.get("/metrics", headers=auth(key))
    assert prom.status_code == 200
    text = prom.data.decode()
    assert 'taskapp_steps_total{agent="summarizer",model="gemini-2.5-flash-lite",status="succeeded"}' in text
    assert 'taskapp_batches_total{agent="summarizer",model="gemini-2.5-flash-lite",reason="window"}' in text
    assert "taskapp_cost_usd_total" in text and "taskapp_queue_depth" not in text
    assert 'taskapp_queue_depth{queue="orchestration"}' in client.get("/metrics", headers=auth(token)).data.decode()

    ui_login(client, key)
    page = client.get("/dashboard")
    assert page.status_code == 200 and b"summarizer" in page.data and b'data-chart="' in page.data
    assert b"Flushed because" in page.data and b"window " in page.data


def test_cancel_button_cancels_a_running_run(client, team, settings, stack, workers):
    """The run page's cancel button ends a run in flight; its queued steps are never called."""
    import httpx

    _, key = team
    httpx.post(f"{stack.sim_url}/_sim/config", json={"latency_ms": 1500})
    try:
        run_id = client.post(
            "/api/runs",
            headers=auth(key),
            json={"workflow": "research", "input": {"question": "Will this be cancelled?"}},
        ).json["id"]
        ui_login(client, key)
        csrf = form_token(client.get(f"/runs/{run_id}").data)
        assert client.post(f"/runs/{run_id}/cancel", data={"csrf_token": "wrong"}).status_code == 400
        resp = client.post(f"/runs/{run_id}/cancel", data={"csrf_token": csrf})
        assert resp.status_code == 302
        run = wait_for_run(settings, run_id)
    finally:
        httpx.post(f"{stack.sim_url}/_sim/config", json={"latency_ms": 0})
    assert run.status == "cancelled"
    assert all(s.status in ("cancelled", "succeeded") for s in run.steps)
    assert not any(s.agent == "writer" for s in run.steps)  # the run never got that far


def test_a_429_from_gemini_is_retried_after_its_retry_delay(client, team, workers, settings, stack, db_session):
    """Gemini says 429 although the gate granted (another app shares the project): the whole
    fleet waits retryDelay for that model, and the step finishes; the 429 is on record."""
    httpx.post(
        f"{stack.sim_url}/_sim/config", json={"inject": [{"status": 429, "count": 1, "retry_delay_s": 2}]}
    ).raise_for_status()
    _, key = team
    run_id = client.post(
        "/api/runs",
        headers=auth(key),
        json={"workflow": "summarize", "input": {"text": "rate limited once"}, "options": {"priority": "interactive"}},
    ).json["id"]
    run = wait_for_run(settings, run_id, timeout_s=30)
    assert run.status == "succeeded"
    events = db_session.scalars(select(Event).where(Event.run_id == run.id).order_by(Event.id)).all()
    retry = next(e for e in events if e.type == "step.retrying")
    assert retry.data["reason"] == "rate_limited" and retry.data["delay_s"] == 2
    done = next(e for e in events if e.type == "step.succeeded")
    assert (done.created_at - retry.created_at).total_seconds() >= 2
    limited = db_session.scalars(select(LlmCall).where(LlmCall.batch_id == run.steps[0].batch_id)).all()
    assert [c.status for c in limited].count("error") == 1 and any("rate_limited" in (c.error or "") for c in limited)
    metrics = client.get("/api/metrics", headers=auth(key)).json
    lite = next(a for a in metrics["agents"] if a["agent"] == "summarizer")
    assert lite["rate_limited"] >= 1

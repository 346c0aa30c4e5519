"""The dashboard's numbers (taskapp.store.metrics on real PostgreSQL): time series per bucket over a
chosen range, what batching saved against one call per step, what waits now; and its pages' answers
to a bad range (a 400 that says which ranges there are)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import update

from tests.helpers import make_team, ui_login


@pytest.fixture()
def app(settings):
    """The app with a sign-in limit of its own: these tests sign in often, and must not spend the
    per-address budget (20 a minute) that other tests' sign-ins from 127.0.0.1 count against."""
    from web import create_app

    flask_app = create_app(settings.model_copy(update={"sign_in_rate_limit": "1000/minute"}))
    flask_app.config.update(TESTING=True)
    return flask_app


def _batch(session, run_id, agent, when, size, seq0, cost=Decimal("0.0002"), single_cost=None):
    """`size` finished steps of `run_id` in one batch flushed at `when`, with its call (and, with
    `single_cost`, a later one-step call of its own)."""
    from taskapp.store.models import Batch, LlmCall, Step

    batch_id = uuid.uuid4()
    # Finished: an open batch would count as work on its way (the idle flush) for the tests after these.
    session.add(
        Batch(
            id=batch_id,
            agent=agent,
            model="gemini-2.5-flash",
            size=size,
            reason="window",
            flushed_at=when,
            finished_at=when + timedelta(seconds=2),
        )
    )
    call = LlmCall(
        batch_id=batch_id,
        agent=agent,
        model="gemini-2.5-flash",
        step_count=size,
        status="ok",
        latency_ms=200,
        tokens_in=100,
        cost_usd=cost,
        created_at=when + timedelta(seconds=1),
    )
    session.add(call)
    session.flush()
    for i in range(size):
        session.add(
            Step(
                id=uuid.uuid4(),
                run_id=run_id,
                seq=seq0 + i,
                agent=agent,
                model="gemini-2.5-flash",
                stage=agent,
                status="succeeded",
                input={},
                queued_at=when - timedelta(seconds=2),
                batched_at=when,
                started_at=when,
                finished_at=when + timedelta(seconds=1),
                batch_id=batch_id,
                llm_call_id=call.id,
                cost_usd=cost / size,
            )
        )
    if single_cost is not None:
        session.add(
            LlmCall(
                batch_id=uuid.uuid4(),
                agent=agent,
                model="gemini-2.5-flash",
                step_count=1,
                status="ok",
                latency_ms=100,
                cost_usd=single_cost,
                created_at=when + timedelta(seconds=1),
            )
        )


def test_the_series_sum_a_teams_steps_calls_and_cost_per_bucket(settings, db_session):
    from taskapp.store import dashboard_series, metrics
    from taskapp.store.models import Run

    team_id, _ = make_team(settings)
    now = datetime.now(UTC).replace(second=30, microsecond=0)
    run = Run(
        id=uuid.uuid4(),
        team_id=team_id,
        workflow="summarize",
        input={},
        options={},
        status="succeeded",
        created_at=now - timedelta(minutes=3),
        finished_at=now - timedelta(minutes=2, seconds=50),
    )
    db_session.add(run)
    db_session.flush()
    _batch(db_session, run.id, "summarizer", now - timedelta(minutes=3), 4, 0)
    db_session.commit()
    scope = metrics.Scope(team_id)
    series = dashboard_series.time_series(db_session, dashboard_series.RANGES["15m"], scope, now=now)
    assert len(series["t"]) == 30 and series["bucket_s"] == 30
    assert sum(series["steps_per_min"]) == pytest.approx(4 * 2)  # 4 steps in one 30 s bucket: 8 per minute
    assert sum(series["calls_per_min"]) == pytest.approx(2)
    assert [v for v in series["mean_batch_size"] if v is not None] == [4.0]
    assert [v for v in series["call_p95_ms"] if v is not None] == [200.0]
    assert [v for v in series["run_p50_s"] if v is not None] == [10.0]
    assert sum(series["cost_per_hour"]) == pytest.approx(0.0002 * 120)
    assert sum(series["models"]["gemini-2.5-flash"]["requests_per_min"]) == pytest.approx(2)
    other = dashboard_series.time_series(
        db_session, dashboard_series.RANGES["15m"], metrics.Scope(make_team(settings)[0]), now=now
    )
    assert sum(other["steps_per_min"]) == 0 and other["models"] == {}  # another team sees none of it


def test_batching_savings_count_calls_exactly_and_price_steps_at_one_step_calls(settings, db_session):
    from taskapp.store import dashboard_series, metrics
    from taskapp.store.models import Run

    team_id, _ = make_team(settings)
    now = datetime.now(UTC)
    run = Run(id=uuid.uuid4(), team_id=team_id, workflow="summarize", input={}, options={}, status="running")
    db_session.add(run)
    db_session.flush()
    _batch(db_session, run.id, "agent_a", now - timedelta(minutes=5), 5, 0, Decimal("0.0005"), Decimal("0.0003"))
    _batch(db_session, run.id, "agent_b", now - timedelta(minutes=5), 3, 10)  # no one-step call to price it
    run.status = "succeeded"  # ended: the workers' sweeper must not take up a run made by hand
    db_session.commit()
    saved = dashboard_series.batching_savings(db_session, now - timedelta(hours=1), metrics.Scope(team_id))
    assert (saved["steps"], saved["calls"], saved["calls_saved"]) == (8, 2, 6)
    assert saved["one_call_per_step_usd"] == pytest.approx(5 * 0.0003)
    assert saved["saved_usd"] == pytest.approx(5 * 0.0003 - 0.0005)
    assert saved["agents_without_estimate"] == 1


def test_current_waits_count_a_teams_steps_by_what_they_wait_for(settings, db_session):
    from taskapp.store import dashboard_series, events, metrics
    from taskapp.store.models import Run, Step

    team_id, _ = make_team(settings)
    run = Run(id=uuid.uuid4(), team_id=team_id, workflow="summarize", input={}, options={}, status="running")
    db_session.add(run)
    db_session.flush()
    now = datetime.now(UTC)

    def step(seq, status, kind="agent"):
        s = Step(
            id=uuid.uuid4(),
            run_id=run.id,
            seq=seq,
            agent="a",
            model="m",
            status=status,
            kind=kind,
            input={},
            batched_at=now - timedelta(seconds=5) if status == "batched" else None,
        )
        db_session.add(s)
        return s

    step(0, "queued")
    step(1, "queued")
    step(2, "batched")
    waiting = step(3, "batched")
    step(4, "queued", kind="tool")
    step(5, "running")
    db_session.flush()
    events.record_step(db_session, waiting, "quota.wait", model="m", reason="rpm", wait_s=1.0, ahead=0)
    db_session.commit()
    try:
        assert dashboard_series.current_waits(db_session, metrics.Scope(team_id)) == {
            "in_buffers": 2,
            "on_their_way": 1,
            "waiting_for_quota": 1,
            "tools_waiting": 1,
            "calls_under_way": 1,
        }
    finally:
        # Made by hand, so ended by hand: the workers' sweeper and the idle flush of the tests
        # after this one would otherwise see a running run with steps waiting forever.
        db_session.execute(update(Step).where(Step.run_id == run.id).values(status="cancelled"))
        run.status = "cancelled"
        db_session.commit()


def test_the_dashboard_answers_a_bad_range_with_a_400_that_names_the_ranges(client, team):
    assert ui_login(client, team[1]).status_code == 302
    page = client.get("/dashboard?range=5y")
    assert page.status_code == 400 and "range must be one of 15m, 1h, 6h, 24h, 7d" in page.data.decode()
    bad = client.get("/dashboard/series.json?range=5y")
    assert bad.status_code == 400 and bad.json["error"]["code"] == "invalid_range"
    good = client.get("/dashboard/series.json?range=6h").json
    assert len(good["t"]) == 72 and good["bucket_s"] == 300 and "limits" in good
    html = client.get("/dashboard?range=24h").data.decode()
    assert html.count('data-chart="') == 7 and 'aria-current="page">24h' in html
    assert "vendor/uplot/uPlot.iife.min.js" in html and "cdn" not in html.lower()

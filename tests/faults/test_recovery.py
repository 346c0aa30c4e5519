"""Recovery with the workers running: the sweeper finds what a dead flusher or a lost message
leaves behind, a lost start message is nudged, and a lease outlives a slow call.

Real Redis, Postgres, two worker nodes (2 s leases, 1 s sweeps: WORKER_ENV in tests/helpers.py)
and the simulator. Claims, deliveries and sweeps driven by hand: tests/integration/test_recovery.py.
"""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from sqlalchemy import select

from taskapp.domain.batching import BatchPolicy
from taskapp.hotstate.buffers import Batcher, Lane
from taskapp.store.models import Event, LlmCall, Step
from tests.helpers import claim_steps, run_steps, submit_summary, wait_for_run


def _steal_from_buffer(batcher: Batcher, db_session, run_id: str) -> str:
    """Take a run's step out of its buffer before any flusher does (what a flusher killed
    between its take and its commit leaves behind)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        steps = run_steps(db_session, [run_id])
        if steps and batcher.waiting(steps[0].lane, steps[0].model, [str(steps[0].id)]):
            lane = Lane(steps[0].lane, steps[0].model, steps[0].agent, BatchPolicy(64, 0))
            taken = batcher.take(lane, force=True)
            assert str(steps[0].id) in {t.step_id for t in taken}
            return str(steps[0].id)
        time.sleep(0.002)
    raise AssertionError("the step never reached its buffer")


def test_sweeper_reoffers_a_step_lost_between_take_and_dispatch(client, team, workers, settings, db_session, batcher):
    _, key = team
    run_id = submit_summary(client, key, "the flusher died holding me")
    step_id = _steal_from_buffer(batcher, db_session, run_id)
    step = db_session.get(Step, uuid.UUID(step_id))
    assert step.status == "queued" and step.batch_id is None  # nothing was sent for it
    run = wait_for_run(settings, run_id, timeout_s=30)
    assert run.status == "succeeded"
    (step,) = run_steps(db_session, [run_id])
    # Re-offered by the sweeper (after window + grace), then flushed on the window as usual.
    assert (step.finished_at - step.queued_at).total_seconds() > 2
    assert step.buffer_wait_ms < 1000


@pytest.mark.parametrize("where", ["batched", "running"])
def test_sweeper_reoffers_a_batch_whose_message_is_lost(client, team, workers, settings, db_session, batcher, where):
    """A batch marked in Postgres whose message never arrives (or whose worker died mid-call)."""
    from taskapp.hotstate.buffers import Taken
    from taskapp.store.batches import open_batch
    from taskapp.store.db import session_factory

    _, key = team
    run_id = submit_summary(client, key, f"my message is lost ({where})")
    step_id = _steal_from_buffer(batcher, db_session, run_id)
    lost_batch = uuid.uuid4()
    with session_factory(settings).begin() as session:
        assert open_batch(
            session, lost_batch, "summarizer", "gemini-2.5-flash-lite", [Taken(step_id, 0)], "window", stranded_s=0
        ) == [step_id]
        if where == "running":
            assert claim_steps(session, lost_batch, [uuid.UUID(step_id)], lease_s=0)
    run = wait_for_run(settings, run_id, timeout_s=30)
    assert run.status == "succeeded"
    (step,) = run_steps(db_session, [run_id])
    assert step.batch_id != lost_batch
    reasons = [
        e.data.get("reason")
        for e in db_session.scalars(
            select(Event).where(Event.run_id == uuid.UUID(run_id), Event.type == "step.queued").order_by(Event.id)
        )
    ]
    assert len(reasons) == 2 and reasons[1]  # queued, then queued again by the sweeper, saying why


def test_sweeper_starts_a_run_whose_start_message_was_lost(team, workers, settings):
    from taskapp.store.db import session_factory
    from taskapp.store.runs import create_run

    team_id, _ = team
    with session_factory(settings).begin() as session:
        run, _ = create_run(session, team_id=team_id, workflow="summarize", input={"text": "no message"}, options={})
        run_id = run.id
    assert wait_for_run(settings, run_id, timeout_s=30).status == "succeeded"


def test_a_call_longer_than_the_lease_keeps_its_claim(client, team, workers, settings, db_session, stack):
    """The lease (2 s in these workers) is renewed while a 5 s call runs: the sweeper never
    takes the step over, and it is called and committed once."""
    httpx.post(f"{stack.sim_url}/_sim/config", json={"latency_ms": 5000}).raise_for_status()
    try:
        _, key = team
        run_id = submit_summary(client, key, "a slow answer", priority="interactive")
        run = wait_for_run(settings, run_id, timeout_s=30)
    finally:
        httpx.post(f"{stack.sim_url}/_sim/config", json={"latency_ms": 0})
    assert run.status == "succeeded"
    (step,) = run_steps(db_session, [run_id])
    assert step.attempts == 1
    assert len(db_session.scalars(select(LlmCall).where(LlmCall.batch_id == step.batch_id)).all()) == 1
    queued = db_session.scalars(
        select(Event).where(Event.run_id == uuid.UUID(run_id), Event.type == "step.queued")
    ).all()
    assert len(queued) == 1  # never re-offered

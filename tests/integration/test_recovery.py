"""Recovery driven by hand, no workers: claims wait for the flush that published them, a second
delivery claims nothing, poison steps end, a late answer is committed or yields, and the sweeper
closes the batches it takes steps back from (recording a call in flight as lost).

Real Redis and Postgres; a test that sweeps by hand first ends the runs earlier tests left open
(`no_open_runs`), and keeps the workers' flushers, when a session has started them, from
sweeping (`no_background_sweep`). The sweeper against live workers: tests/faults/test_recovery.py.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from sqlalchemy import select

from taskapp.store.models import LlmCall, Step
from tests.helpers import claim_steps, wait_for_run


def _started_run(settings, team, text: str):
    """A summarize run started by hand (no message, no buffer): its one step is `queued`."""
    from taskapp.pipeline import orchestrator
    from taskapp.store.db import session_factory
    from taskapp.store.runs import create_run

    factory = session_factory(settings)
    with factory.begin() as session:
        run, _ = create_run(session, team_id=team[0], workflow="summarize", input={"text": text}, options={})
        run_id = run.id
    with factory.begin() as session:
        (ready,) = orchestrator.advance_runs(session, [run_id], settings).ready
    return run_id, ready


@pytest.fixture(autouse=True)
def _end_hand_made_batches(settings):
    """The batches a test opened by hand end with it, once nothing of theirs is pending: nobody
    else finishes them, and for BATCH_STRANDED_S they count as calls in flight, so later tests
    that need a quiet fleet (tests/system/test_batching.py) would wait for them."""
    from sqlalchemy import func, update

    from taskapp.store.db import session_factory
    from taskapp.store.models import PENDING_STEP_STATUSES, Batch

    factory = session_factory(settings)
    with factory() as session:
        started = session.scalar(select(func.now()))
    yield
    pending = select(Step.id).where(Step.batch_id == Batch.id, Step.status.in_(tuple(PENDING_STEP_STATUSES)))
    with factory.begin() as session:
        session.execute(
            update(Batch)
            .where(Batch.finished_at.is_(None), Batch.flushed_at >= started, ~pending.exists())
            .values(finished_at=func.now())
        )


# -- claims, deliveries and late answers -----------------------------------------------


def test_a_header_task_that_starts_before_its_flush_commits_waits_for_it(team, settings):
    """The flusher publishes a batch's chord before it commits the batch; a header task that
    is faster than that commit must wait for it, not find the steps \"nobody's\" and skip them."""
    from taskapp.hotstate.buffers import Taken
    from taskapp.pipeline import orchestrator
    from taskapp.store.batches import open_batch
    from taskapp.store.db import session_factory

    factory = session_factory(settings)
    run_id, ready = _started_run(settings, team, "race")
    batch_id = uuid.uuid4()
    claimed: list = []
    flush = factory()
    try:
        flush.begin()
        assert open_batch(flush, batch_id, ready.agent, ready.model, [Taken(ready.step_id, 0)], "window", 60)

        def header() -> None:  # what execute_batch does first: look, then claim
            with factory.begin() as session:
                claimed.extend(s.id for s in claim_steps(session, batch_id, [uuid.UUID(ready.step_id)], 60))

        thread = threading.Thread(target=header)
        thread.start()
        time.sleep(0.5)
        assert thread.is_alive()  # waiting on the flush's row locks
        flush.commit()
        thread.join(10)
        assert claimed == [uuid.UUID(ready.step_id)]
    finally:
        flush.close()
        with factory.begin() as session:
            orchestrator.cancel_run(session, run_id)


def test_a_second_delivery_of_a_batch_waits_for_the_first_and_claims_nothing(team, settings):
    """A delivery holds its batch's steps from its look to its claim (the quota gate comes in
    between). A second delivery of the same batch meanwhile waits for the first's commit and
    then finds nothing to claim; with a share lock both would wait to update the rows, and
    PostgreSQL would abort one of them as a deadlock."""
    from taskapp.hotstate.buffers import Taken
    from taskapp.pipeline import orchestrator
    from taskapp.store.batches import open_batch
    from taskapp.store.claims import claim, claimable
    from taskapp.store.db import session_factory

    factory = session_factory(settings)
    run_id, ready = _started_run(settings, team, "delivered twice")
    sid, batch_id = uuid.UUID(ready.step_id), uuid.uuid4()
    with factory.begin() as session:
        open_batch(session, batch_id, ready.agent, ready.model, [Taken(ready.step_id, 0)], "window", 60)
    second: dict[str, list] = {}

    def deliver_again() -> None:
        with factory.begin() as session:
            second["claimed"] = claim_steps(session, batch_id, [sid], lease_s=60)

    first = factory()
    try:
        first.begin()
        seen = claimable(first, batch_id, [sid])
        assert [s.id for s in seen] == [sid]
        thread = threading.Thread(target=deliver_again)
        thread.start()
        time.sleep(0.5)
        assert thread.is_alive()  # waiting on the first delivery's lock
        assert [s.id for s in claim(first, batch_id, seen, 60, None)] == [sid]
        first.commit()
        thread.join(10)
        assert second == {"claimed": []}
    finally:
        first.close()
        with factory.begin() as session:
            orchestrator.cancel_run(session, run_id)


def test_a_step_whose_deliveries_keep_dying_fails_as_poison(team, settings, db_session):
    """A step claimed STEP_MAX_ATTEMPTS times without finishing is failed, saying so, and never
    called again; its run ends."""
    from taskapp.hotstate.buffers import Taken
    from taskapp.llm.gemini import get_client
    from taskapp.pipeline import orchestrator
    from taskapp.pipeline.executor import execute_batch
    from taskapp.store.batches import open_batch
    from taskapp.store.db import session_factory

    factory = session_factory(settings)
    run_id, ready = _started_run(settings, team, "crashes")
    batch_id = uuid.uuid4()
    with factory.begin() as session:
        open_batch(session, batch_id, ready.agent, ready.model, [Taken(ready.step_id, 0)], "window", 60)
        step = session.get(Step, uuid.UUID(ready.step_id))
        step.attempts = settings.step_max_attempts  # nine deliveries died before this one
    outcome = execute_batch(
        factory,
        get_client(settings),
        batch_id,
        [ready.step_id],
        lease_s=60,
        stranded_s=60,
        max_attempts=settings.step_max_attempts,
    )
    assert outcome.succeeded == 0 and outcome.skipped == 1
    with factory.begin() as session:
        orchestrator.advance_runs(session, [run_id], settings)
    db_session.expire_all()
    step = db_session.get(Step, uuid.UUID(ready.step_id))
    assert step.status == "failed" and step.error.startswith("poison: claimed")
    assert db_session.scalars(select(LlmCall).where(LlmCall.batch_id == batch_id)).all() == []  # never called
    run = wait_for_run(settings, run_id)
    assert run.status == "failed" and "poison" in run.error


@pytest.mark.parametrize("called_again", [False, True])
def test_a_paid_answer_wins_over_a_reoffer_nobody_has_called_yet(
    team, settings, db_session, called_again, no_background_sweep, no_open_runs
):
    """A batch's answer arrives after the sweeper re-offered its step (the lease ran out while
    PostgreSQL restarted): it is committed unless another batch already claimed the step, and
    the later batch then finds nothing of its own to call."""
    from taskapp.domain.prompts import Answer
    from taskapp.hotstate.buffers import Taken
    from taskapp.pipeline import orchestrator, sweeper
    from taskapp.pipeline.step_commit import BatchOutcome, commit_answers
    from taskapp.store.batches import open_batch
    from taskapp.store.db import session_factory

    factory = session_factory(settings)
    run_id, ready = _started_run(settings, team, "late answer")
    sid = uuid.UUID(ready.step_id)
    first, second = uuid.uuid4(), uuid.uuid4()
    with factory.begin() as session:
        open_batch(session, first, ready.agent, ready.model, [Taken(ready.step_id, 0)], "window", 60)
        (claimed,) = claim_steps(session, first, [sid], lease_s=0.01)
    time.sleep(0.05)  # the lease runs out: the sweeper takes the step back and a flush re-batches it
    with factory.begin() as session:
        assert [
            r.step_id
            for r in sweeper._requeue(
                session, Step.status == "running", sweeper.datetime.now(sweeper.UTC), "lease expired (worker lost)"
            )
        ] == [ready.step_id]
        assert open_batch(session, second, ready.agent, ready.model, [Taken(ready.step_id, 0)], "window", 60)
    if called_again:
        with factory.begin() as session:
            assert len(claim_steps(session, second, [sid], lease_s=60)) == 1
    outcome = BatchOutcome(batch_id=first)
    with factory.begin() as session:
        commit_answers(session, [claimed], {ready.step_id: Answer(output={"summary": "paid for"})}, [], outcome)
    db_session.expire_all()
    step = db_session.get(Step, sid)
    try:
        # The sweeper took the claim for a dead one and recorded its call as lost; the answer
        # arrived after all, so the holder records the call itself and takes that back.
        assert db_session.scalars(select(LlmCall).where(LlmCall.batch_id == first)).all() == []
        if called_again:  # the second batch's call is under way: it owns the step now
            assert outcome.succeeded == 0 and step.status == "running" and step.batch_id == second
        else:
            assert outcome.succeeded == 1 and step.status == "succeeded" and step.batch_id == first
            assert step.output == {"summary": "paid for"}
            with factory.begin() as session:
                assert claim_steps(session, second, [sid], lease_s=60) == []  # nothing left to call
    finally:
        with factory.begin() as session:
            orchestrator.cancel_run(session, run_id)


# -- batches whose steps were taken back ----------------------------------------------


@pytest.mark.parametrize("where", ["batched", "running"])
def test_a_batch_the_sweeper_takes_back_is_closed_and_its_lost_call_recorded(
    team, settings, db_session, where, no_background_sweep, no_open_runs
):
    """A batch whose message was lost (batched) or whose worker died mid-call (running): once the
    sweeper re-offers its steps, nothing of it is on its way any more. It is closed at once (an
    unfinished batch counts as work on its way for the idle flush, for BATCH_STRANDED_S), and the
    call in flight is recorded as what it was: sent, so billed, its answer lost."""
    from taskapp.hotstate.buffers import Taken
    from taskapp.pipeline import orchestrator, sweeper
    from taskapp.pipeline.dispatcher import get_dispatcher
    from taskapp.store.batches import open_batch
    from taskapp.store.db import session_factory
    from taskapp.store.models import Batch

    factory = session_factory(settings)
    run_id, ready = _started_run(settings, team, f"taken back ({where})")
    sid, lost = uuid.UUID(ready.step_id), uuid.uuid4()
    with factory.begin() as session:
        # Flushed just now: well inside BATCH_STRANDED_S, so "in flight" for the idle flush.
        open_batch(
            session,
            lost,
            ready.agent,
            ready.model,
            [Taken(ready.step_id, 0)],
            "window",
            stranded_s=0 if where == "batched" else 60,
        )
        if where == "running":
            assert claim_steps(session, lost, [sid], lease_s=0.01)  # its worker dies mid-call
    time.sleep(0.05)
    try:
        sweeper.sweep(get_dispatcher())
        db_session.expire_all()
        step, batch = db_session.get(Step, sid), db_session.get(Batch, lost)
        assert step.status == "queued" and step.batch_id is None  # re-offered
        assert batch.finished_at is not None and batch.succeeded == batch.failed == 0
        calls = db_session.scalars(select(LlmCall).where(LlmCall.batch_id == lost)).all()
        if where == "running":
            (call,) = calls
            assert (call.status, call.step_count, call.tokens_out) == ("lost", 1, 0)
            assert call.tokens_in > 0 and call.cost_usd > 0 and "lost" in call.error
            assert call.created_at == step.started_at  # when it was sent, for the per-minute quota views
            assert (batch.calls, batch.tokens_in, batch.cost_usd) == (1, call.tokens_in, call.cost_usd)
        else:  # never claimed: nothing was sent
            assert calls == [] and batch.calls == 0
    finally:
        with factory.begin() as session:
            orchestrator.cancel_run(session, run_id)


def test_a_redelivery_that_takes_over_a_dead_claim_records_its_call_lost_once(team, settings, db_session):
    """The broker redelivers a batch whose worker died mid-call (reject_on_worker_lost) after the
    claim's lease ran out: the redelivery claims the steps again, and the first call is recorded
    as lost; it stays recorded when the second call's answer commits (both were sent)."""
    from taskapp.domain.prompts import Answer
    from taskapp.hotstate.buffers import Taken
    from taskapp.pipeline import orchestrator
    from taskapp.pipeline.step_commit import BatchOutcome, commit_answers
    from taskapp.store.batches import open_batch
    from taskapp.store.db import session_factory

    factory = session_factory(settings)
    run_id, ready = _started_run(settings, team, "delivered again after a crash")
    sid, batch_id = uuid.UUID(ready.step_id), uuid.uuid4()
    with factory.begin() as session:
        open_batch(session, batch_id, ready.agent, ready.model, [Taken(ready.step_id, 0)], "window", 60)
        assert claim_steps(session, batch_id, [sid], lease_s=0.01)
    time.sleep(0.05)
    try:
        with factory.begin() as session:
            (again,) = claim_steps(session, batch_id, [sid], lease_s=60)
        assert again.attempts == 2
        with factory.begin() as session:  # a third look finds the claim alive: nothing more is lost
            assert claim_steps(session, batch_id, [sid], lease_s=60) == []
        outcome = BatchOutcome(batch_id=batch_id)
        with factory.begin() as session:
            commit_answers(session, [again], {ready.step_id: Answer(output={"summary": "second"})}, [], outcome)
        assert outcome.succeeded == 1
        calls = db_session.scalars(select(LlmCall).where(LlmCall.batch_id == batch_id)).all()
        assert [(c.status, c.step_count) for c in calls] == [("lost", 1)]
    finally:
        with factory.begin() as session:
            orchestrator.cancel_run(session, run_id)

"""Batching across runs and worker nodes: shared Redis buffers, a chord per flush, the sweeper.

Real Redis, Postgres, two Celery worker nodes (each with its flusher) and the
simulator. The workers run with a 200 ms window and BATCH_MAX_SIZE 8 (conftest).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict

import httpx
import pytest
import redis
from sqlalchemy import select

from taskapp.batcher import Batcher
from taskapp.batching import BatchPolicy
from taskapp.models import Batch, Event, LlmCall, Step
from tests.conftest import WORKER_ENV, auth, wait_for_run

WINDOW_MS = int(WORKER_ENV["BATCH_MAX_WAIT_MS"])


@pytest.fixture()
def batcher(stack) -> Batcher:
    return Batcher(redis.Redis.from_url(stack.redis_url))


def _submit(client, key: str, text: str, **options) -> str:
    resp = client.post("/api/runs", headers=auth(key),
                       json={"workflow": "summarize", "input": {"text": text}, "options": options})
    assert resp.status_code == 202, resp.json
    return resp.json["id"]


def _steps(db_session, run_ids: list[str]) -> list[Step]:
    db_session.expire_all()
    return list(db_session.scalars(select(Step).where(Step.run_id.in_([uuid.UUID(r) for r in run_ids]))))


# -- the buffer itself (Redis only; an agent no flusher watches) ---------------------------

def test_racing_takers_get_each_step_exactly_once(batcher):
    agent = f"test-agent-{uuid.uuid4().hex[:6]}"
    policy = BatchPolicy(max_size=4, max_wait_ms=0)
    ids = [str(uuid.uuid4()) for _ in range(400)]
    for i in range(0, len(ids), 50):
        batcher.offer(agent, "m", ids[i:i + 50])
    assert batcher.offer(agent, "m", ids[:10]) == 400  # offering again never duplicates
    taken: list[list[str]] = []
    lock = threading.Lock()

    def take() -> None:
        while True:
            got = batcher.take(agent, "m", policy, max_batches=1)
            if not got:
                return
            with lock:
                taken.append([t.step_id for t in got])

    threads = [threading.Thread(target=take) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flat = [sid for batch in taken for sid in batch]
    assert sorted(flat) == sorted(ids)  # every step once, none twice
    assert all(len(batch) <= policy.max_size for batch in taken)


def test_take_waits_for_a_full_batch_or_the_window(batcher):
    agent = f"test-agent-{uuid.uuid4().hex[:6]}"
    policy = BatchPolicy(max_size=3, max_wait_ms=300)
    batcher.offer(agent, "m", ["a", "b"])
    assert batcher.take(agent, "m", policy) == []  # neither full nor due
    batcher.offer(agent, "m", ["c", "d"])
    full = batcher.take(agent, "m", policy)
    assert [t.step_id for t in full] == ["a", "b", "c"]  # one full batch, oldest first; "d" waits
    assert batcher.size(agent, "m") == 1
    time.sleep(0.35)
    late = batcher.take(agent, "m", policy)
    assert [t.step_id for t in late] == ["d"] and late[0].wait_ms >= 300
    batcher.offer(agent, "m", ["e"])
    assert [t.step_id for t in batcher.take(agent, "m", policy, force=True)] == ["e"]  # interactive


# -- across runs and nodes -------------------------------------------------------------

def test_fifty_runs_batch_across_runs_and_nodes(client, team, workers, settings, db_session, stack):
    """Batches never mix agents or models and never exceed the maximum; they span runs queued
    by both worker nodes; every answer reaches its own run."""
    _, key = team
    sim_before = stack.sim.state.seq
    ids = [_submit(client, key, f"Doc-{i:02d} about subject {i}. " * 5) for i in range(50)]
    runs = [wait_for_run(settings, r) for r in ids]
    assert all(r.status == "succeeded" for r in runs), [r.error for r in runs if r.status != "succeeded"]
    for i, run in enumerate(runs):
        assert f"Doc-{i:02d}" in run.output["summary"]  # its own answer, not a neighbour's

    steps = _steps(db_session, ids)
    assert len(steps) == 50 and all(s.batch_id for s in steps)
    batch_ids = {s.batch_id for s in steps}
    batches = db_session.scalars(select(Batch).where(Batch.id.in_(batch_ids))).all()
    assert all(b.agent == "summarizer" and b.model == "gemini-2.5-flash-lite" for b in batches)
    assert all(1 <= b.size <= settings.batch_max_size for b in batches)
    assert max(b.size for b in batches) == settings.batch_max_size  # a burst fills batches
    assert len(batches) < 50 / 2
    # Every batch ran to the aggregator, which recorded what its calls did.
    assert all(b.finished_at and b.calls >= 1 and b.succeeded == b.size and b.tokens_in > 0 for b in batches)
    # Server side: the simulator saw one request per batch here, each carrying the batch's steps.
    sizes = sorted(e["items"] for e in stack.sim.state.requests(sim_before) if e["model"] == "gemini-2.5-flash-lite")
    assert sorted(b.size for b in batches) == sizes or len(sizes) >= len(batches)

    queued_by: dict[uuid.UUID, str] = {}
    for event in db_session.scalars(select(Event).where(Event.type == "step.queued",
                                                        Event.run_id.in_([uuid.UUID(r) for r in ids]))):
        queued_by[uuid.UUID(event.data["step_id"])] = event.data["queued_by"].split("@")[0]
    assert set(queued_by.values()) == {"w1", "w2"}
    nodes_per_batch = defaultdict(set)
    for s in steps:
        nodes_per_batch[s.batch_id].add(queued_by[s.id])
    assert any(len(nodes) == 2 for nodes in nodes_per_batch.values())  # one call served both nodes' intake

    events = db_session.scalars(select(Event).where(Event.type == "step.batched",
                                                    Event.run_id.in_([uuid.UUID(r) for r in ids]))).all()
    assert len(events) == 50 and all(e.data["batch_id"] for e in events)


def test_a_lone_step_flushes_after_the_window(client, team, workers, settings, db_session):
    _, key = team
    run_id = _submit(client, key, "a lone document")
    assert wait_for_run(settings, run_id).status == "succeeded"
    (step,) = _steps(db_session, [run_id])
    batch = db_session.get(Batch, step.batch_id)
    assert batch.reason == "window" and batch.size == 1
    assert WINDOW_MS <= step.buffer_wait_ms <= WINDOW_MS + 250


def test_interactive_runs_flush_at_once(client, team, workers, settings, db_session):
    _, key = team
    run_id = _submit(client, key, "someone is watching", priority="interactive")
    assert wait_for_run(settings, run_id).status == "succeeded"
    (step,) = _steps(db_session, [run_id])
    assert db_session.get(Batch, step.batch_id).reason == "interactive"
    assert step.buffer_wait_ms < WINDOW_MS


@pytest.mark.parametrize("kind, times, expect", [("corrupt", 1, "succeeded"), ("drop", 1, "succeeded"),
                                                 ("corrupt", -1, "failed")])
def test_a_bad_answer_is_repaired_or_fails_alone(client, team, workers, settings, db_session, stack,
                                                 kind, times, expect):
    marker = f"BAD-{uuid.uuid4().hex[:8]}"
    httpx.post(f"{stack.sim_url}/_sim/config",
               json={"answer_faults": [{"match": marker, "kind": kind, "times": times}]}).raise_for_status()
    try:
        _, key = team
        ids = [_submit(client, key, f"Good doc {i}") for i in range(3)]
        ids.insert(1, _submit(client, key, f"Bad doc {marker}"))
        runs = [wait_for_run(settings, r) for r in ids]
    finally:
        httpx.post(f"{stack.sim_url}/_sim/config", json={"answer_faults": []})
    bad = runs.pop(1)
    assert all(r.status == "succeeded" for r in runs)
    assert bad.status == expect, bad.error
    steps = {str(s.run_id): s for s in _steps(db_session, ids)}
    bad_step = steps[str(bad.id)]
    shared = {s.batch_id for s in steps.values()}
    assert len(shared) == 1  # all four shared one batch
    calls = db_session.scalars(select(LlmCall).where(LlmCall.batch_id == bad_step.batch_id)).all()
    if expect == "succeeded":
        assert len(calls) == 2  # the batch call, then one repair for the bad step alone
        assert marker in bad.output["summary"]
    else:
        assert len(calls) == 3  # the batch call and two repairs, then it fails alone
        assert "fails the summarizer schema" in bad_step.error
        assert "failed" in bad.error
    good = [steps[str(r.id)] for r in runs]
    assert all(s.llm_call_id == calls[0].id if calls[0].step_count == 4 else True for s in good)


def _started_run(settings, team, text: str):
    """A summarize run started by hand (no message, no buffer): its one step is `queued`."""
    from taskapp import orchestrator, store
    from taskapp.db import session_factory

    factory = session_factory(settings)
    with factory.begin() as session:
        run, _ = store.create_run(session, team_id=team[0], workflow="summarize", input={"text": text}, options={})
        run_id = run.id
    with factory.begin() as session:
        (ready,) = orchestrator.advance_run(session, run_id, settings)
    return run_id, ready


# -- the sweeper ----------------------------------------------------------------------

def _steal_from_buffer(batcher: Batcher, db_session, run_id: str) -> str:
    """Take a run's step out of its buffer before any flusher does (what a flusher killed
    between its take and its commit leaves behind)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        steps = _steps(db_session, [run_id])
        if steps and batcher.waiting("summarizer", "gemini-2.5-flash-lite", [str(steps[0].id)]):
            taken = batcher.take("summarizer", "gemini-2.5-flash-lite", BatchPolicy(64, 0), force=True)
            assert str(steps[0].id) in {t.step_id for t in taken}
            return str(steps[0].id)
        time.sleep(0.002)
    raise AssertionError("the step never reached its buffer")


def test_sweeper_reoffers_a_step_lost_between_take_and_dispatch(client, team, workers, settings, db_session,
                                                                batcher):
    _, key = team
    run_id = _submit(client, key, "the flusher died holding me")
    step_id = _steal_from_buffer(batcher, db_session, run_id)
    step = db_session.get(Step, uuid.UUID(step_id))
    assert step.status == "queued" and step.batch_id is None  # nothing was sent for it
    run = wait_for_run(settings, run_id, timeout_s=30)
    assert run.status == "succeeded"
    (step,) = _steps(db_session, [run_id])
    # Re-offered by the sweeper (after window + grace), then flushed on the window as usual.
    assert (step.finished_at - step.queued_at).total_seconds() > 2
    assert step.buffer_wait_ms < 1000


@pytest.mark.parametrize("where", ["batched", "running"])
def test_sweeper_reoffers_a_batch_whose_message_is_lost(client, team, workers, settings, db_session, batcher,
                                                        where):
    """A batch marked in Postgres whose message never arrives (or whose worker died mid-call)."""
    from taskapp.batcher import Taken
    from taskapp.batches import open_batch
    from taskapp.db import session_factory
    from taskapp.executor import claim_steps

    _, key = team
    run_id = _submit(client, key, f"my message is lost ({where})")
    step_id = _steal_from_buffer(batcher, db_session, run_id)
    lost_batch = uuid.uuid4()
    with session_factory(settings).begin() as session:
        assert open_batch(session, lost_batch, "summarizer", "gemini-2.5-flash-lite", [Taken(step_id, 0)],
                          "window", stranded_s=0) == [step_id]
        if where == "running":
            assert claim_steps(session, lost_batch, [uuid.UUID(step_id)], lease_s=0)
    run = wait_for_run(settings, run_id, timeout_s=30)
    assert run.status == "succeeded"
    (step,) = _steps(db_session, [run_id])
    assert step.batch_id != lost_batch
    reasons = [e.data.get("reason") for e in db_session.scalars(
        select(Event).where(Event.run_id == uuid.UUID(run_id), Event.type == "step.queued").order_by(Event.id))]
    assert len(reasons) == 2 and reasons[1]  # queued, then queued again by the sweeper, saying why


def test_sweeper_starts_a_run_whose_start_message_was_lost(team, workers, settings):
    from taskapp import store
    from taskapp.db import session_factory

    team_id, _ = team
    with session_factory(settings).begin() as session:
        run, _ = store.create_run(session, team_id=team_id, workflow="summarize", input={"text": "no message"},
                                  options={})
        run_id = run.id
    assert wait_for_run(settings, run_id, timeout_s=30).status == "succeeded"


def test_a_header_task_that_starts_before_its_flush_commits_waits_for_it(team, settings):
    """The flusher publishes a batch's chord before it commits the batch; a header task that
    is faster than that commit must wait for it, not find the steps \"nobody's\" and skip them."""
    from taskapp import orchestrator
    from taskapp.batcher import Taken
    from taskapp.batches import open_batch
    from taskapp.db import session_factory
    from taskapp.executor import _claimable, claim_steps

    factory = session_factory(settings)
    run_id, ready = _started_run(settings, team, "race")
    batch_id = uuid.uuid4()
    claimed: list = []
    flush = factory()
    try:
        flush.begin()
        assert open_batch(flush, batch_id, ready.agent, ready.model, [Taken(ready.step_id, 0)], "window", 60)

        def header() -> None:  # what execute_batch does first: look, then claim
            with factory() as session:
                seen = _claimable(session, batch_id, [uuid.UUID(ready.step_id)])
            assert [s.id for s in seen] == [uuid.UUID(ready.step_id)]
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


def test_a_step_whose_deliveries_keep_dying_fails_as_poison(team, settings, db_session):
    """A step claimed STEP_MAX_ATTEMPTS times without finishing is failed, saying so, and never
    called again; its run ends."""
    from taskapp import orchestrator
    from taskapp.batcher import Taken
    from taskapp.batches import open_batch
    from taskapp.db import session_factory
    from taskapp.executor import execute_batch
    from taskapp.llm.gemini import get_client

    factory = session_factory(settings)
    run_id, ready = _started_run(settings, team, "crashes")
    batch_id = uuid.uuid4()
    with factory.begin() as session:
        open_batch(session, batch_id, ready.agent, ready.model, [Taken(ready.step_id, 0)], "window", 60)
        step = session.get(Step, uuid.UUID(ready.step_id))
        step.attempts = settings.step_max_attempts  # nine deliveries died before this one
    outcome = execute_batch(factory, get_client(settings), batch_id, [ready.step_id], lease_s=60, stranded_s=60,
                            max_attempts=settings.step_max_attempts)
    assert outcome.succeeded == 0 and outcome.skipped == 1
    with factory.begin() as session:
        orchestrator.advance_run(session, run_id, settings)
    db_session.expire_all()
    step = db_session.get(Step, uuid.UUID(ready.step_id))
    assert step.status == "failed" and step.error.startswith("poison: claimed")
    assert db_session.scalars(select(LlmCall).where(LlmCall.batch_id == batch_id)).all() == []  # never called
    run = wait_for_run(settings, run_id)
    assert run.status == "failed" and "poison" in run.error


def test_a_call_longer_than_the_lease_keeps_its_claim(client, team, workers, settings, db_session, stack):
    """The lease (2 s in these workers) is renewed while a 5 s call runs: the sweeper never
    takes the step over, and it is called and committed once."""
    httpx.post(f"{stack.sim_url}/_sim/config", json={"latency_ms": 5000}).raise_for_status()
    try:
        _, key = team
        run_id = _submit(client, key, "a slow answer", priority="interactive")
        run = wait_for_run(settings, run_id, timeout_s=30)
    finally:
        httpx.post(f"{stack.sim_url}/_sim/config", json={"latency_ms": 0})
    assert run.status == "succeeded"
    (step,) = _steps(db_session, [run_id])
    assert step.attempts == 1
    assert len(db_session.scalars(select(LlmCall).where(LlmCall.batch_id == step.batch_id)).all()) == 1
    queued = db_session.scalars(select(Event).where(Event.run_id == uuid.UUID(run_id),
                                                    Event.type == "step.queued")).all()
    assert len(queued) == 1  # never re-offered

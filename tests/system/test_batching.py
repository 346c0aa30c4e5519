"""Batching across runs and worker nodes: a chord per flush, windows, idle flushes, bad answers.

The buffers on their own: tests/integration/test_batch_buffers.py.

Real Redis, Postgres, two Celery worker nodes (each with its flusher) and the
simulator. The workers run with a 200 ms window (WORKER_ENV in tests/helpers.py) and the
default BATCH_MAX_SIZE of 8.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict

import httpx
import pytest
from sqlalchemy import select

from taskapp.hotstate.buffers import buffer_key
from taskapp.store.models import Batch, Event, LlmCall, Run
from tests.helpers import WORKER_ENV, auth, make_team, run_steps, submit_summary, wait_for_run

WINDOW_MS = int(WORKER_ENV["BATCH_MAX_WAIT_MS"])


def test_one_call_never_carries_two_teams_steps_unless_the_agent_is_shared(client, workers, settings, db_session):
    """An agent's steps share calls within a team by default; a deployer's shared agent may carry
    several teams' steps in one prompt."""
    keys = [make_team(settings)[1] for _ in range(4)]
    isolated = [submit_summary(client, keys[i % 4], f"Own-{i:02d} text. " * 3) for i in range(16)]
    shared = [submit_summary(client, keys[i % 4], f"Shared-{i:02d} text. " * 3, "summarize_shared") for i in range(16)]
    for run_id in isolated + shared:
        assert wait_for_run(settings, run_id).status == "succeeded"
    team_of = {
        str(run.id): run.team_id
        for run in db_session.scalars(select(Run).where(Run.id.in_([uuid.UUID(r) for r in isolated + shared])))
    }

    def teams_per_batch(ids: list[str]) -> list[int]:
        by_batch: dict[uuid.UUID, set[uuid.UUID]] = defaultdict(set)
        for step in run_steps(db_session, ids):
            by_batch[step.batch_id].add(team_of[str(step.run_id)])
        return [len(teams) for teams in by_batch.values()]

    assert max(teams_per_batch(isolated)) == 1  # one team per prompt
    assert max(teams_per_batch(shared)) > 1  # the shared agent batches across teams
    lanes = {s.lane for s in run_steps(db_session, isolated)}
    assert len(lanes) == 4 and all("~" in lane for lane in lanes)  # a lane per team


def test_fifty_runs_batch_across_runs_and_nodes(client, workers, settings, db_session, stack):
    """Batches never mix agents or models and never exceed the maximum; they span runs queued
    by both worker nodes; every answer reaches its own run."""
    # Many teams: a run's start takes along its team's other queued runs, so one team's burst
    # can be started by whichever node takes the first message; 25 teams' starts reach both.
    # Their steps share calls because the deployer's agent allows it (batch.across_teams).
    keys = [make_team(settings)[1] for _ in range(25)]
    sim_before = stack.sim.state.seq
    ids = [
        submit_summary(client, keys[i % len(keys)], f"Doc-{i:02d} about subject {i}. " * 5, "summarize_shared")
        for i in range(50)
    ]
    runs = [wait_for_run(settings, r) for r in ids]
    assert all(r.status == "succeeded" for r in runs), [r.error for r in runs if r.status != "succeeded"]
    for i, run in enumerate(runs):
        assert f"Doc-{i:02d}" in run.output["summary"]  # its own answer, not a neighbour's

    steps = run_steps(db_session, ids)
    assert len(steps) == 50 and all(s.batch_id for s in steps)
    batch_ids = {s.batch_id for s in steps}
    batches = db_session.scalars(select(Batch).where(Batch.id.in_(batch_ids))).all()
    assert all(b.agent == "summarizer" and b.model == "gemini-2.5-flash-lite" for b in batches)
    assert all(1 <= b.size <= settings.batch_max_size for b in batches)
    # A burst shares calls (how full the first ones get depends on how fast this machine submits).
    assert max(b.size for b in batches) >= settings.batch_max_size // 2
    assert len(batches) < 50 / 2
    # Every batch ran to the aggregator, which recorded what its calls did.
    assert all(b.finished_at and b.calls >= 1 and b.succeeded == b.size and b.tokens_in > 0 for b in batches)
    # Server side: the simulator saw one request per batch here, each carrying the batch's steps.
    sizes = sorted(e["items"] for e in stack.sim.state.requests(sim_before) if e["model"] == "gemini-2.5-flash-lite")
    assert sorted(b.size for b in batches) == sizes or len(sizes) >= len(batches)

    queued_by: dict[uuid.UUID, str] = {}
    for event in db_session.scalars(
        select(Event).where(Event.type == "step.queued", Event.run_id.in_([uuid.UUID(r) for r in ids]))
    ):
        queued_by[uuid.UUID(event.data["step_id"])] = event.data["queued_by"].split("@")[0]
    assert set(queued_by.values()) == {"w1", "w2"}
    nodes_per_batch = defaultdict(set)
    for s in steps:
        nodes_per_batch[s.batch_id].add(queued_by[s.id])
    assert any(len(nodes) == 2 for nodes in nodes_per_batch.values())  # one call served both nodes' intake

    events = db_session.scalars(
        select(Event).where(Event.type == "step.batched", Event.run_id.in_([uuid.UUID(r) for r in ids]))
    ).all()
    assert len(events) == 50 and all(e.data["batch_id"] for e in events)


def test_a_lone_step_flushes_after_the_window(client, team, workers, settings, db_session):
    _, key = team
    run_id = submit_summary(client, key, "a lone document")
    assert wait_for_run(settings, run_id).status == "succeeded"
    (step,) = run_steps(db_session, [run_id])
    batch = db_session.get(Batch, step.batch_id)
    assert batch.reason == "window" and batch.size == 1
    assert WINDOW_MS <= step.buffer_wait_ms <= WINDOW_MS + 250


def test_a_lone_runs_later_steps_flush_as_soon_as_nothing_could_join_them(
    client, team, workers, settings, db_session, batcher
):
    """Its first step waits the window (the next submission could join it at once); after
    that nothing is on its way to any buffer, so no stage waits a window for company."""
    _wait_until_quiet(settings, batcher)
    _, key = team
    resp = client.post(
        "/api/runs", headers=auth(key), json={"workflow": "research", "input": {"question": "Why do lone runs wait?"}}
    )
    assert resp.status_code == 202, resp.json
    run = wait_for_run(settings, resp.json["id"])
    assert run.status == "succeeded", run.error
    steps = run_steps(db_session, [run.id])
    batches = {b.id: b for b in db_session.scalars(select(Batch).where(Batch.id.in_({s.batch_id for s in steps})))}
    first, *later = sorted(steps, key=lambda s: s.seq)
    assert batches[first.batch_id].reason == "window" and first.buffer_wait_ms >= WINDOW_MS
    assert len(later) >= 3
    assert all(batches[s.batch_id].reason == "idle" and s.buffer_wait_ms < WINDOW_MS for s in later), [
        (s.agent, batches[s.batch_id].reason, s.buffer_wait_ms) for s in later
    ]


@pytest.mark.parametrize("moving", ["runs_to_start", "batches_in_flight", "runs_between_steps", "steps_unbuffered"])
def test_the_outlook_sees_each_kind_of_work_on_its_way(settings, workers, batcher, moving):
    """Each question on its own, against Postgres and the buffers: the rows are written in a
    transaction that is never committed, so only the outlook (same session) sees them."""
    from taskapp.store.db import session_factory
    from taskapp.store.in_motion import read_outlook
    from taskapp.store.models import Run, Step

    _wait_until_quiet(settings, batcher)
    team_id, _ = make_team(settings)
    agent = f"test-agent-{uuid.uuid4().hex[:6]}"  # a buffer no flusher watches
    with session_factory(settings)() as session:
        run = Run(
            id=uuid.uuid4(),
            team_id=team_id,
            workflow="summarize",
            input={},
            options={},
            status="queued" if moving == "runs_to_start" else "running",
        )
        session.add(run)
        session.flush()
        if moving == "batches_in_flight":
            run.status = "succeeded"
            session.add(Batch(id=uuid.uuid4(), agent=agent, model="m", size=1, reason="window"))
        if moving == "runs_between_steps":
            session.add(
                Step(id=uuid.uuid4(), run_id=run.id, seq=1, agent=agent, model="m", input={}, status="succeeded")
            )
        if moving == "steps_unbuffered":
            waiting, lost = uuid.uuid4(), uuid.uuid4()
            session.add_all(
                [
                    Step(id=sid, run_id=run.id, seq=seq, agent=agent, model="m", input={}, status="queued")
                    for seq, sid in ((1, waiting), (2, lost))
                ]
            )
            _park(batcher, agent, [str(waiting)])
        session.flush()
        seen = read_outlook(session, batcher, settings.batch_stranded_s)
        assert seen.anything_on_its_way and getattr(seen, moving), seen
        if moving == "steps_unbuffered":
            _park(batcher, agent, [str(lost)])  # now both wait in the buffer: nothing on its way
            assert not read_outlook(session, batcher, settings.batch_stranded_s).anything_on_its_way
            batcher.client.delete(buffer_key(agent, "m"))
        session.rollback()


def _park(batcher, lane: str, step_ids: list[str]) -> None:
    """Put steps in a buffer without listing its lane for the flushers (no flusher takes them)."""
    batcher.client.zadd(buffer_key(lane, "m"), {sid: time.time() * 1000 for sid in step_ids})


def _wait_until_quiet(settings, batcher, timeout_s: float = 60) -> None:
    """Earlier tests' runs may still be moving; this test needs a fleet with nothing on its way."""
    from taskapp.store.db import session_factory
    from taskapp.store.in_motion import read_outlook

    deadline = time.monotonic() + timeout_s
    while True:
        with session_factory(settings)() as session:
            seen = read_outlook(session, batcher, settings.batch_stranded_s)
        if not seen.anything_on_its_way:
            return
        assert time.monotonic() < deadline, f"the fleet never went quiet: {seen}"
        time.sleep(0.2)


def test_interactive_runs_flush_at_once(client, team, workers, settings, db_session):
    _, key = team
    run_id = submit_summary(client, key, "someone is watching", priority="interactive")
    assert wait_for_run(settings, run_id).status == "succeeded"
    (step,) = run_steps(db_session, [run_id])
    assert db_session.get(Batch, step.batch_id).reason == "interactive"
    assert step.buffer_wait_ms < WINDOW_MS


@pytest.mark.parametrize(
    "kind, times, expect", [("corrupt", 1, "succeeded"), ("drop", 1, "succeeded"), ("corrupt", -1, "failed")]
)
def test_a_bad_answer_is_repaired_or_fails_alone(
    client, team, workers, settings, db_session, stack, kind, times, expect
):
    marker = f"BAD-{uuid.uuid4().hex[:8]}"
    httpx.post(
        f"{stack.sim_url}/_sim/config", json={"answer_faults": [{"match": marker, "kind": kind, "times": times}]}
    ).raise_for_status()
    try:
        _, key = team
        ids = [submit_summary(client, key, f"Good doc {i}") for i in range(3)]
        ids.insert(1, submit_summary(client, key, f"Bad doc {marker}"))
        runs = [wait_for_run(settings, r) for r in ids]
    finally:
        httpx.post(f"{stack.sim_url}/_sim/config", json={"answer_faults": []})
    bad = runs.pop(1)
    assert all(r.status == "succeeded" for r in runs)
    assert bad.status == expect, bad.error
    steps = {str(s.run_id): s for s in run_steps(db_session, ids)}
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

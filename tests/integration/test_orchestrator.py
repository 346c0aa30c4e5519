"""Deciding many runs in one transaction (what an aggregator does for a finished batch).

Real PostgreSQL, no workers: the runs and steps are put in the states a batch leaves
them in, and `advance_runs` is called the way the dispatcher calls it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from taskapp.pipeline import orchestrator
from taskapp.store import run_starts
from taskapp.store.models import Event, Run, Step, Team
from taskapp.store.runs import create_run
from tests.helpers import make_team


def _queued_runs(factory, team_id, n: int, workflow: str = "summarize") -> list[uuid.UUID]:
    with factory.begin() as session:
        payload = {"text": "some text"} if workflow == "summarize" else {"question": "why?", "max_revisions": 0}
        return [
            create_run(session, team_id=team_id, workflow=workflow, input=payload, options={})[0].id for _ in range(n)
        ]


def _event_types(session, run_id) -> list[str]:
    return list(session.scalars(select(Event.type).where(Event.run_id == run_id).order_by(Event.id)))


def test_a_batch_of_runs_is_decided_in_one_transaction(settings):
    from taskapp.store.db import session_factory

    factory = session_factory(settings)
    team_id, _ = make_team(settings)
    done, failing, cancelled = _queued_runs(factory, team_id, 3)
    research = _queued_runs(factory, team_id, 1, workflow="research")[0]

    with factory.begin() as session:
        started = orchestrator.advance_runs(session, [done, failing, cancelled, research], settings, origin="w1")
    assert sorted(r.run_id for r in started.ready) == sorted(str(r) for r in (done, failing, cancelled, research))
    assert {r.step_id for r in started.ready} == {
        str(orchestrator.step_key(r, 1)) for r in (done, failing, cancelled, research)
    }

    with factory.begin() as session:  # what the batches left behind
        session.execute(update(Step).where(Step.run_id == done).values(status="succeeded", output={"summary": "short"}))
        session.execute(update(Step).where(Step.run_id == failing).values(status="failed", error="bad answer"))
        orchestrator.cancel_run(session, cancelled)
        # a research run past its timeout, one researcher done and one still waiting in a buffer
        session.execute(update(Step).where(Step.run_id == research).values(status="succeeded", output={}))
        for seq, status in ((2, "succeeded"), (3, "queued")):
            session.add(
                Step(
                    id=orchestrator.step_key(research, seq),
                    run_id=research,
                    seq=seq,
                    agent="researcher",
                    model="gemini-2.5-flash-lite",
                    status=status,
                    input={},
                )
            )
        session.execute(
            update(Run)
            .where(Run.id == research)
            .values(started_at=datetime.now(UTC) - timedelta(seconds=settings.run_timeout_s + 5))
        )

    with factory.begin() as session:
        advanced = orchestrator.advance_runs(session, [research, cancelled, failing, done], settings)
    assert advanced.ready == []
    with factory() as session:
        runs = {r.id: r for r in session.scalars(select(Run).where(Run.team_id == team_id))}
        assert runs[done].status == "succeeded" and runs[done].output == {"summary": "short"}
        assert runs[failing].status == "failed" and "bad answer" in runs[failing].error
        assert runs[cancelled].status == "cancelled"
        assert runs[research].status == "failed" and runs[research].error.startswith("run_timeout")
        waiting = session.get(Step, orchestrator.step_key(research, 3))
        assert waiting.status == "cancelled"  # a failed run's queued steps are never called
        assert _event_types(session, done) == ["run.queued", "run.started", "step.queued", "run.succeeded"]
        assert _event_types(session, failing)[-1] == "run.failed"
        assert _event_types(session, cancelled)[-1] == "run.cancelled"

    with factory.begin() as session:  # a redelivered aggregator decides nothing twice
        again = orchestrator.advance_runs(session, [done, failing, research], settings)
    assert again.ready == [] and again.freed_teams == set()
    with factory() as session:
        assert _event_types(session, done).count("run.succeeded") == 1


def test_a_team_limit_counts_the_runs_started_in_the_same_transaction(settings):
    from taskapp.store.db import session_factory

    factory = session_factory(settings)
    team_id, _ = make_team(settings)
    with factory.begin() as session:
        session.get(Team, team_id).max_concurrent_runs = 1
    first, second = _queued_runs(factory, team_id, 2)

    with factory.begin() as session:
        advanced = orchestrator.advance_runs(session, [first, second], settings)
    assert len(advanced.ready) == 1
    with factory() as session:
        statuses = sorted(session.scalars(select(Run.status).where(Run.team_id == team_id)))
    assert statuses == ["queued", "running"]

    running = uuid.UUID(advanced.ready[0].run_id)
    with factory.begin() as session:
        session.execute(update(Step).where(Step.run_id == running).values(status="succeeded", output={"summary": "ok"}))
    with factory.begin() as session:
        ended = orchestrator.advance_runs(session, [running], settings)
    assert ended.freed_teams == {team_id}  # the dispatcher now starts the team's next queued run
    with factory() as session:
        assert run_starts.next_queued_runs(session, {team_id}) == [first if running == second else second]


def test_a_start_takes_its_teams_other_queued_runs_along(settings):
    """A run's start message starts the other runs its team still has queued, in the same
    transaction: not one another starter holds, not another team's, not a limited team's."""
    from taskapp.store.db import session_factory

    factory = session_factory(settings)
    team_id, _ = make_team(settings)
    own, along, held = _queued_runs(factory, team_id, 3)
    other_team = _queued_runs(factory, make_team(settings)[0], 1)[0]
    limited_id, _ = make_team(settings)
    with factory.begin() as session:
        session.get(Team, limited_id).max_concurrent_runs = 2
    limited, limited_waiting = _queued_runs(factory, limited_id, 2)

    starter = factory()  # another start message's transaction, holding one of the runs
    try:
        starter.begin()
        assert run_starts.lock_queued_run(starter, held) is not None
        with factory.begin() as session:
            run = run_starts.lock_queued_run(session, own)
            assert run_starts.lock_queued_run(session, held) is None  # held by a starter: not waited for
            assert run_starts.queued_runs_to_start(session, run, 63) == [along]
            started = orchestrator.advance_runs(session, [own, along], settings)
        assert sorted(r.run_id for r in started.ready) == sorted(map(str, (own, along)))
    finally:
        starter.rollback()
        starter.close()
    with factory.begin() as session:
        assert run_starts.lock_queued_run(session, along) is None  # its own message finds it started
        assert run_starts.queued_runs_to_start(session, run_starts.lock_queued_run(session, held), 63) == []
        assert run_starts.queued_runs_to_start(session, run_starts.lock_queued_run(session, limited), 63) == []
    with factory() as session:
        assert session.get(Run, other_team).status == "queued"
        assert session.get(Run, limited_waiting).status == "queued"


def test_a_taken_along_runs_start_message_stops_before_postgres(settings, batcher):
    """The run a start took along is marked in Redis after that start's commit: its own
    start message stops on the mark without a statement; a redelivery of it (the mark is
    spent) asks Postgres, which finds the run started and starts nothing twice."""
    from sqlalchemy import event

    from taskapp.celery_app import app
    from taskapp.hotstate.buffers import buffer_key
    from taskapp.pipeline.dispatcher import STARTED_PREFIX, Dispatcher
    from taskapp.store.db import get_engine, session_factory

    factory = session_factory(settings)
    team_id, _ = make_team(settings)
    own, along = _queued_runs(factory, team_id, 2)
    dispatcher = Dispatcher(settings, factory, batcher, app)
    statements: list[str] = []

    def count(conn, cursor, statement, *_):
        statements.append(statement)

    try:
        dispatcher.start(own)
        assert batcher.client.exists(f"{STARTED_PREFIX}:{along}")
        assert not batcher.client.exists(f"{STARTED_PREFIX}:{own}")  # only the ones taken along
        event.listen(get_engine(settings), "before_cursor_execute", count)
        try:
            dispatcher.start(str(along).upper())  # its own message (any spelling of the id)
            assert statements == []
            dispatcher.start(along)  # redelivered
            assert statements, "a spent mark must send the message to Postgres"
        finally:
            event.remove(get_engine(settings), "before_cursor_execute", count)
        with factory() as session:
            assert session.get(Run, along).status != "queued"  # (the test workers may have run it since)
            steps = session.scalars(select(Step).where(Step.run_id.in_([own, along]))).all()
            assert sorted(str(s.run_id) for s in steps) == sorted(map(str, (own, along)))  # one step each
    finally:
        with factory() as session:  # out of the shared buffer, or the test workers would run them
            for step in session.scalars(select(Step).where(Step.run_id.in_([own, along]))):
                batcher.client.zrem(buffer_key(step.agent, step.model), str(step.id))

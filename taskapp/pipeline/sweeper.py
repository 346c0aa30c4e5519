"""The sweeper: finds work that a lost message, a dead worker or a dead flusher left behind.

Correctness never rests on a chord callback or on one message arriving. Every few
seconds one node (a Redis lease elects it) looks at Postgres, the source of truth:

- steps `queued` for longer than their window but in no buffer (a flusher died
  between taking them and committing their batch, or Redis lost the buffer);
- steps `batched` whose message never started, or `running` under an expired
  lease (their worker died and the broker has not redelivered): offered again,
  and a late delivery of the old batch finds nothing to do (claims check batch_id);
  not in the first lease period after PostgreSQL started (holders could not renew).
  A dead claim's call is recorded as lost, and a batch left with nothing pending is
  closed, so it no longer counts as work on its way for the idle flush;
- tool steps whose `run_tool` message is lost: `queued` for BATCH_STRANDED_S without a claim,
  or `running` past their lease (their worker died): sent to the tools queue again;
- runs with nothing pending that nothing advanced (a chord body that never ran),
  runs still `queued` (a lost start message) and runs past their timeout.

All of it is idempotent, so a sweep that races the normal path does no harm.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Float, cast, exists, func, select, update
from sqlalchemy.orm import Session

from taskapp.pipeline.dispatcher import Dispatcher
from taskapp.pipeline.orchestrator import Ready
from taskapp.pipeline.tool_publish import publish_tool_calls
from taskapp.store import events, tool_steps
from taskapp.store.batches import close_abandoned_batches
from taskapp.store.lost_calls import record_lost_calls
from taskapp.store.models import PENDING_STEP_STATUSES, Run, Step
from taskapp.store.workflows import UnknownAgent, UnknownWorkflow, agent_of_step, definition_of_run

log = logging.getLogger(__name__)

BUFFER_GRACE_MS = 2_000  # beyond its window, before a queued step is looked for in its buffer
BATCH_LIMIT = 500  # rows per category per sweep, so one sweep stays short


@dataclass
class SweepReport:
    reoffered: dict[str, int] = field(default_factory=dict)  # why -> steps
    runs_advanced: int = 0

    @property
    def anything(self) -> bool:
        return bool(self.runs_advanced or any(self.reoffered.values()))


def sweep(dispatcher: Dispatcher, now: datetime | None = None) -> SweepReport:
    now = now or datetime.now(UTC)
    report = SweepReport()
    with dispatcher.factory() as session:
        lost = _missing_from_buffers(dispatcher, session, now)
    report.reoffered["not_in_buffer"] = len(lost)
    ready = list(lost)
    with dispatcher.factory.begin() as session:
        stranded = _requeue(session, Step.status == "batched", now, "batch message never started")
        expired = []
        if not _restarted_within(session, now, dispatcher.settings.step_lease_s):
            expired = _requeue(session, Step.status == "running", now, "lease expired (worker lost)")
    report.reoffered["stranded_batch"] = len(stranded)
    report.reoffered["lease_expired"] = len(expired)
    dispatcher.offer(ready + stranded + expired)
    with dispatcher.factory.begin() as session:
        tool_calls = tool_steps.take_back_stale(
            session,
            now,
            queued_after_s=dispatcher.settings.batch_stranded_s,
            leases_too=not _restarted_within(session, now, dispatcher.settings.step_lease_s),
        )
    report.reoffered["tool_message_lost"] = publish_tool_calls(dispatcher.app, tool_calls)
    with dispatcher.factory() as session:
        runs = runs_to_nudge(session, now, dispatcher.settings.run_timeout_s, dispatcher.settings.run_nudge_after_s)
    dispatcher.advance(runs, origin="sweeper", skip_locked=True)
    report.runs_advanced = len(runs)
    if report.anything:
        log.warning("sweeper recovered work: %s, %d run(s) advanced", report.reoffered, report.runs_advanced)
    return report


def _restarted_within(session: Session, now: datetime, seconds: float) -> bool:
    """PostgreSQL came up less than `seconds` ago. Leases that ran out while it was down say
    nothing about their holders, who could not renew: give them one lease period to renew
    or commit (an answer they hold is already paid for) before taking their steps away."""
    started = session.scalar(select(func.pg_postmaster_start_time()))
    return started is not None and now - started < timedelta(seconds=seconds)


def _live(run_id_col: Any) -> Any:
    return run_id_col.in_(select(Run.id).where(Run.status == "running"))


def _ready(session: Session, step: Step, priority: str = "batch") -> Ready:
    """An agent step to offer again, with its lane and its agent's batch policy (from the run's
    definition); tool steps are taken back by taskapp.store.tool_steps."""
    agent = agent_of_step(session, step)
    return Ready(
        str(step.id),
        step.agent,
        step.model,
        str(step.run_id),
        priority,
        lane=step.lane or agent.id,
        batch=(agent.batch.max_size, agent.batch.max_wait_ms),
        opens_runs=_opens_runs(session, step),
    )


def _ready_or_none(session: Session, step: Step) -> Ready | None:
    """`_ready`, or None (logged) for a step its run's definition cannot place: one bad row must
    not stop the sweep for every other run."""
    try:
        return _ready(session, step)
    except (UnknownAgent, UnknownWorkflow) as exc:
        log.error(
            "sweeper: cannot re-offer a step: %s", exc, extra={"step_id": str(step.id), "run_id": str(step.run_id)}
        )
        return None


def _opens_runs(session: Session, step: Step) -> bool:
    run = session.get(Run, step.run_id)
    return run is not None and definition_of_run(session, run).first_agent.name == step.agent


def _missing_from_buffers(dispatcher: Dispatcher, session: Session, now: datetime) -> list[Ready]:
    candidates = session.scalars(
        select(Step)
        .where(
            Step.status == "queued",
            Step.kind == "agent",
            _live(Step.run_id),
            Step.queued_at < now - timedelta(milliseconds=BUFFER_GRACE_MS),
        )
        .order_by(Step.queued_at)
        .limit(BATCH_LIMIT)
    ).all()
    by_buffer: dict[tuple[str, str], list[Ready]] = {}
    for step in candidates:
        ready = _ready_or_none(session, step)
        if ready is None:
            continue
        due = dispatcher.settings.batch_policy(step.agent, ready.own_policy).max_wait_ms + BUFFER_GRACE_MS
        if step.queued_at < now - timedelta(milliseconds=due):
            by_buffer.setdefault((ready.lane, step.model), []).append(ready)
    lost = []
    for (lane, model), items in by_buffer.items():
        waiting = dispatcher.batcher.waiting(lane, model, [r.step_id for r in items])
        lost += [r for r in items if r.step_id not in waiting]
    return lost


def _requeue(session: Session, condition, now: datetime, why: str) -> list[Ready]:
    """Take steps back from batches past their lease; the calls of claims taken over are
    recorded as lost, and batches left with nothing pending are closed (nothing of theirs
    is on its way any more, so the idle flush stops waiting for them)."""
    # Read as they were (batch, claim) and locked; steps a claim holds right now are skipped.
    rows = session.scalars(
        select(Step)
        .where(condition, Step.kind == "agent", Step.lease_until < now, _live(Step.run_id))
        .order_by(Step.id)
        .limit(BATCH_LIMIT)
        .with_for_update(key_share=True, skip_locked=True, of=Step)
    ).all()
    if not rows:
        return []
    record_lost_calls(session, list(rows))
    session.execute(
        update(Step).where(Step.id.in_([s.id for s in rows])).values(status="queued", batch_id=None, lease_until=None),
        execution_options={"synchronize_session": False},
    )
    for step in sorted(rows, key=lambda s: (str(s.run_id), s.seq)):
        events.record_step(
            session,
            step,
            "step.queued",
            model=step.model,
            reason=why,
        )
    close_abandoned_batches(session, {s.batch_id for s in rows if s.batch_id is not None})
    return [r for r in (_ready_or_none(session, s) for s in rows) if r is not None]


def runs_to_nudge(session: Session, now: datetime, server_timeout_s: float, nudge_after_s: float) -> list[uuid.UUID]:
    """Runs that need an advance nobody is going to send them (idle or unstarted for `nudge_after_s`)."""
    pending = exists().where(Step.run_id == Run.id, Step.status.in_(tuple(PENDING_STEP_STATUSES)))
    last_finished = select(func.max(Step.finished_at)).where(Step.run_id == Run.id).scalar_subquery()
    nudge_before = now - timedelta(seconds=nudge_after_s)
    idle = select(Run.id).where(
        Run.status == "running", ~pending, func.coalesce(last_finished, Run.started_at) < nudge_before
    )
    never_started = select(Run.id).where(Run.status == "queued", Run.created_at < nudge_before)
    own_timeout = cast(Run.options[("limits", "run_timeout_s")].astext, Float)
    timeout_s = func.least(func.coalesce(own_timeout, server_timeout_s), server_timeout_s)
    overdue = select(Run.id).where(Run.status == "running", func.extract("epoch", now - Run.started_at) > timeout_s)
    ids: list[uuid.UUID] = []
    for query in (idle, never_started, overdue):
        ids += session.scalars(query.limit(BATCH_LIMIT)).all()
    return sorted(set(ids))

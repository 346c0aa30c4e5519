"""Carrying out workflow decisions against Postgres: start, advance and finish runs.

The run row is locked while a decision is made, so two workers finishing the last
two steps of a phase cannot both create the next one. Step ids are derived from
`(run_id, seq)`, so a redelivered advance produces the same ids, never new ones.
Returns the steps it queued; the caller commits first and offers them to the batcher after.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from taskapp import events
from taskapp.agents import get_agent
from taskapp.models import FINAL_RUN_STATUSES, PENDING_STEP_STATUSES, Run, Step, Team
from taskapp.quota import TeamShare, pacific_day_start
from taskapp.settings import Settings
from taskapp.workflows import Decision, Limits, RunOptions, StepState, decide, get_workflow

log = logging.getLogger(__name__)
STEP_NAMESPACE = uuid.UUID("6f1c8a52-3f7e-4a39-9a8e-2b7f0c1d9e11")


def step_key(run_id: uuid.UUID, seq: int) -> uuid.UUID:
    """The deterministic id of a run's seq-th step."""
    return uuid.uuid5(STEP_NAMESPACE, f"{run_id}:{seq}")


@dataclass(frozen=True)
class Ready:
    """A step stored as `queued`, to be offered to its agent's batch buffer once committed."""

    step_id: str
    agent: str
    model: str
    run_id: str
    priority: str = "batch"


def server_limits(settings: Settings) -> Limits:
    return Limits(
        max_steps=settings.max_steps,
        token_budget=settings.run_token_budget,
        max_handoff_depth=settings.max_handoff_depth,
        run_timeout_s=settings.run_timeout_s,
        context_token_budget=settings.context_token_budget,
    )


def advance_run(session: Session, run_id: uuid.UUID, settings: Settings, origin: str | None = None,
                skip_locked: bool = False) -> list[Ready]:
    """Take the run one decision further; a no-op for a finished or unknown run.

    `origin` names the worker node deciding, recorded on `step.queued` (which node queued what).
    `skip_locked` (the sweeper): a run someone is advancing right now is left to them.
    """
    row = session.execute(
        select(Run, Team).outerjoin(Team, Team.id == Run.team_id).where(Run.id == run_id)
        .with_for_update(of=Run, skip_locked=skip_locked)
    ).first()
    if row is None or row.Run.status in FINAL_RUN_STATUSES:
        return []
    run, team = row.Run, row.Team
    now = datetime.now(UTC)
    share = TeamShare(team.max_concurrent_runs, team.daily_token_budget) if team else TeamShare()
    if run.status == "queued" and share.max_concurrent_runs is not None:
        session.get(Team, run.team_id, with_for_update=True)  # two workers starting the team's runs: one at a time
        running = session.scalar(select(func.count()).select_from(Run).where(
            Run.team_id == run.team_id, Run.status == "running"))
        if not share.may_start_run(running):
            log.info("run waits for one of its team's %d running runs to end", running,
                     extra={"run_id": str(run.id)})
            return []  # stays queued: a run of the team that ends starts it, or the sweeper does
    steps: list[Step] = []
    if run.status == "queued":  # a run gets its first steps only once it is running
        run.status, run.started_at = "running", now
        events.record(session, run.id, "run.started", workflow=run.workflow)
    else:
        steps = list(session.scalars(select(Step).where(Step.run_id == run.id).order_by(Step.seq)))
    options = run.options or {}
    run_options = RunOptions(priority=options.get("priority", "batch"), overrides=options.get("limits") or {})
    decision = decide(
        get_workflow(run.workflow),
        run.input,
        [StepState(s.seq, s.agent, s.status, s.input, s.output, s.error, s.tokens_in + s.tokens_out)
         for s in steps],
        run_options.limits(server_limits(settings)),
        elapsed_s=(now - (run.started_at or now)).total_seconds(),
    )
    if not decision.finished and share.daily_token_budget is not None:
        exhausted = share.budget_exhausted(_team_tokens_today(session, run.team_id, now))
        if exhausted:
            decision = Decision(failure=exhausted)
    if decision.finished:
        finish_run(session, run, decision)
        return []
    return _queue_steps(session, run, decision, next_seq=(steps[-1].seq + 1) if steps else 1,
                        priority=run_options.priority, origin=origin)


def _team_tokens_today(session: Session, team_id: uuid.UUID, now: datetime) -> int:
    return int(session.scalar(
        select(func.coalesce(func.sum(Step.tokens_in + Step.tokens_out), 0)).join(Run, Run.id == Step.run_id)
        .where(Run.team_id == team_id, Step.finished_at >= pacific_day_start(now))
    ))


def next_queued_runs(session: Session, team_ids: set[uuid.UUID]) -> list[uuid.UUID]:
    """Each team's oldest queued run: the one to start when one of its runs ended."""
    return [rid for rid in (session.scalar(
        select(Run.id).where(Run.team_id == t, Run.status == "queued").order_by(Run.created_at).limit(1))
        for t in team_ids) if rid is not None]


def _queue_steps(session: Session, run: Run, decision: Decision, next_seq: int, priority: str,
                 origin: str | None) -> list[Ready]:
    created: list[Step] = []
    for offset, new in enumerate(decision.new_steps):
        agent = get_agent(new.agent)
        seq = next_seq + offset
        step = Step(id=step_key(run.id, seq), run_id=run.id, seq=seq, agent=agent.name, model=agent.model,
                    status="queued", input=new.input)
        session.add(step)
        created.append(step)
    for step in created:  # steps and events go in with the commit's one flush
        events.record(session, run.id, "step.queued", step_id=step.id, seq=step.seq, agent=step.agent,
                      model=step.model, queued_by=origin)
    return [Ready(str(s.id), s.agent, s.model, str(run.id), priority) for s in created]


def finish_run(session: Session, run: Run, decision: Decision) -> None:
    """Record a run's end; queued steps of a failed run are cancelled, never called."""
    run.finished_at = datetime.now(UTC)
    if decision.failure is not None:
        run.status, run.error = "failed", decision.failure
        _cancel_pending_steps(session, run)
        events.record(session, run.id, "run.failed", error=decision.failure)
        log.info("run failed", extra={"run_id": str(run.id), "error": decision.failure})
    else:
        run.status, run.output = "succeeded", decision.output
        events.record(session, run.id, "run.succeeded")
        log.info("run succeeded", extra={"run_id": str(run.id)})


def cancel_run(session: Session, run_id: uuid.UUID, team_id: uuid.UUID | None = None) -> Run | None:
    """Cancel a run: queued steps are never called; a step in a call has its answer discarded."""
    run = session.get(Run, run_id, with_for_update=True)
    if run is None or (team_id is not None and run.team_id != team_id):
        return None
    if run.status in FINAL_RUN_STATUSES:
        return run
    run.status, run.finished_at, run.error = "cancelled", datetime.now(UTC), "cancelled by request"
    _cancel_pending_steps(session, run)
    events.record(session, run.id, "run.cancelled")
    return run


def _cancel_pending_steps(session: Session, run: Run) -> None:
    session.execute(
        update(Step)
        .where(Step.run_id == run.id, Step.status.in_(tuple(PENDING_STEP_STATUSES)))
        .values(status="cancelled", finished_at=datetime.now(UTC), lease_until=None)
    )

"""Carrying out workflow decisions against Postgres: start, advance and finish runs.

The run row is locked while a decision is made, so two workers finishing the last
two steps of a phase cannot both create the next one. Step ids are derived from
`(run_id, seq)`, so a redelivered advance produces the same ids, never new ones.
Returns the steps it queued; the caller commits first and offers them to the batcher after.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from taskapp.domain.agents import lane_of
from taskapp.domain.definitions.checks import Definition
from taskapp.domain.definitions.flow import TOOL_STEP, DefinedWorkflow
from taskapp.domain.engine import (
    Decision,
    RunOptions,
    StepState,
    decide,
    step_key,
    within_team_budget,
)
from taskapp.domain.quota import TeamShare
from taskapp.settings import Settings
from taskapp.store import events, workflows
from taskapp.store.models import FINAL_RUN_STATUSES, PENDING_STEP_STATUSES, Run, Step, Team
from taskapp.store.run_starts import TeamStarts, team_tokens_today

log = logging.getLogger(__name__)


TOOL_MODEL = "tool"  # the model column of a tool step: it calls no model


@dataclass(frozen=True)
class Ready:
    """A step stored as `queued`, to be offered to its lane's batch buffer (or, a tool step,
    sent to the tools queue) once committed."""

    step_id: str
    agent: str
    model: str
    run_id: str
    priority: str = "batch"
    lane: str = ""
    kind: str = "agent"
    batch: tuple[int | None, int | None] = (None, None)  # the agent's own (max_size, max_wait_ms)
    opens_runs: bool = False  # its agent takes runs' first steps (it always waits its window)
    timeout_s: float = 0.0  # a tool step's time limit

    @property
    def own_policy(self) -> dict[str, int | None]:
        return {"max_size": self.batch[0], "max_wait_ms": self.batch[1]}


@dataclass
class Advanced:
    """What one transaction of decisions produced, for the caller to act on after its commit."""

    ready: list[Ready] = field(default_factory=list)
    freed_teams: set[uuid.UUID] = field(default_factory=set)  # teams with a run limit and an ended run

    def add(self, other: Advanced) -> None:
        self.ready += other.ready
        self.freed_teams |= other.freed_teams


@dataclass
class _Plan:
    run: Run
    team: Team | None
    starting: bool
    decision: Decision
    next_seq: int
    priority: str
    definition: Definition | None


def advance_runs(
    session: Session,
    run_ids: Iterable[uuid.UUID],
    settings: Settings,
    origin: str | None = None,
    skip_locked: bool = False,
) -> Advanced:
    """Take each run one decision further, all in the caller's transaction.

    A batch's runs are decided together so that a finished batch costs a handful of
    statements, not a handful per run: the runs are locked in one statement (in id
    order, so two deciders never deadlock; `FOR NO KEY UPDATE`, so another transaction's
    event or step rows for a run never wait on it), their steps read in one, and what
    the decisions write goes in with the commit. Reads all come before writes; the
    runs' event locks come last, with the commit (taskapp.store.events).

    `origin` names the worker node deciding, recorded on `step.queued` (which node queued what).
    `skip_locked` (the sweeper): a run someone is advancing right now is left to them.
    """
    rows = session.execute(
        select(Run, Team)
        .outerjoin(Team, Team.id == Run.team_id)
        .where(Run.id.in_(list(run_ids)))
        .order_by(Run.id)
        .with_for_update(of=Run, skip_locked=skip_locked, key_share=True)
    ).all()
    out = Advanced()
    out.freed_teams = {
        team.id
        for run, team in rows
        if run.status in FINAL_RUN_STATUSES and team and team.max_concurrent_runs is not None
    }
    live = [(run, team) for run, team in rows if run.status not in FINAL_RUN_STATUSES]
    steps_of = _steps_of(session, [run.id for run, _ in live if run.status != "queued"])  # queued: no steps yet
    now = datetime.now(UTC)
    starts = TeamStarts(session)
    with session.no_autoflush:
        plans = [
            plan
            for run, team in live
            if (plan := _plan(session, run, team, steps_of.get(run.id, []), settings, now, starts))
        ]
    _carry_out(session, plans, origin, now, out)
    return out


def _steps_of(session: Session, run_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[Step]]:
    """Each run's steps in order, in one statement."""
    steps_of: dict[uuid.UUID, list[Step]] = defaultdict(list)
    if run_ids:
        for step in session.scalars(select(Step).where(Step.run_id.in_(run_ids)).order_by(Step.run_id, Step.seq)):
            steps_of[step.run_id].append(step)
    return steps_of


def _plan(
    session: Session,
    run: Run,
    team: Team | None,
    steps: list[Step],
    settings: Settings,
    now: datetime,
    starts: TeamStarts,
) -> _Plan | None:
    """One run's next move (None: nothing to write), decided by the domain's rules."""
    share = TeamShare(team.max_concurrent_runs, team.daily_token_budget) if team else TeamShare()
    starting = run.status == "queued"
    if starting and not starts.may_start(run, share):
        return None
    options = run.options or {}
    run_options = RunOptions(priority=options.get("priority", "batch"), overrides=options.get("limits") or {})
    try:
        definition: Definition | None = workflows.definition_of_run(session, run)
    except workflows.UnknownWorkflow:
        definition = None
    if definition is None:
        decision = Decision(failure=f"workflow {run.workflow!r} is not known here (no stored version)")
    else:
        decision = decide(
            DefinedWorkflow(definition),
            run.input,
            [
                StepState(
                    s.seq,
                    s.agent,
                    s.status,
                    s.input,
                    s.output,
                    s.error,
                    s.tokens_in + s.tokens_out,
                    s.handoff,
                    s.stage,
                    s.kind,
                    s.item,
                )
                for s in steps
            ],
            run_options.limits(settings.limits()),
            elapsed_s=0.0 if starting else (now - (run.started_at or now)).total_seconds(),
        )
    if not decision.finished and share.daily_token_budget is not None:
        decision = within_team_budget(decision, share, team_tokens_today(session, run.team_id, now))
    if not (starting or decision.finished or decision.new_steps):
        return None
    next_seq = (steps[-1].seq + 1) if steps else 1
    return _Plan(run, team, starting, decision, next_seq, run_options.priority, definition)


def _carry_out(session: Session, plans: list[_Plan], origin: str | None, now: datetime, out: Advanced) -> None:
    """Write what the plans decided: starts, ends (a failing run's pending steps cancelled), new steps."""
    failing = [p.run for p in plans if p.decision.failure is not None]
    if failing:
        _cancel_pending_steps(session, failing)
    new_steps: list[dict[str, Any]] = []
    for plan in plans:
        run = plan.run
        if plan.starting:  # a run gets its first steps only once it is running
            run.status, run.started_at = "running", now
            events.record(session, run.id, "run.started", workflow=run.workflow)
        if plan.decision.finished:
            _finish_run(session, run, plan.decision)
            if plan.team is not None and plan.team.max_concurrent_runs is not None:
                out.freed_teams.add(plan.team.id)
        else:
            assert plan.definition is not None  # a decision with new steps came from a definition
            out.ready += _queue_steps(session, plan, origin, new_steps)
    if new_steps:  # every run's new steps in one INSERT (Core: no objects to track)
        session.connection().execute(insert(Step), new_steps)


def _queue_steps(session: Session, plan: _Plan, origin: str | None, rows: list[dict[str, Any]]) -> list[Ready]:
    """Add the decision's steps to `rows` (the caller inserts them) and record their events."""
    run, definition = plan.run, plan.definition
    assert definition is not None
    first_agent = definition.first_agent.name
    ready = []
    for offset, new in enumerate(plan.decision.new_steps):
        seq = plan.next_seq + offset
        step_id = step_key(run.id, seq)
        if new.kind == TOOL_STEP:
            tool = definition.tools.get(new.agent)
            model, lane, item = (
                TOOL_MODEL,
                None,
                Ready(
                    str(step_id),
                    new.agent,
                    TOOL_MODEL,
                    str(run.id),
                    plan.priority,
                    kind=TOOL_STEP,
                    timeout_s=tool.timeout_s if tool else 10.0,
                ),
            )
        else:
            agent = definition.agents[new.agent]
            model, lane = agent.model, lane_of(agent, str(run.team_id))
            item = Ready(
                str(step_id),
                agent.name,
                model,
                str(run.id),
                plan.priority,
                lane=lane,
                batch=(agent.batch.max_size, agent.batch.max_wait_ms),
                opens_runs=agent.name == first_agent,
            )
        rows.append(
            {
                "id": step_id,
                "run_id": run.id,
                "seq": seq,
                "agent": new.agent,
                "model": model,
                "status": "queued",
                "input": new.input,
                "handoff": new.handoff,
                "stage": new.stage,
                "kind": new.kind,
                "item": new.item,
                "lane": lane,
            }
        )
        events.record(
            session,
            run.id,
            "step.queued",
            step_id=step_id,
            seq=seq,
            agent=new.agent,
            model=model,
            stage=new.stage,
            kind=new.kind,
            queued_by=origin,
        )
        ready.append(item)
    return ready


def _finish_run(session: Session, run: Run, decision: Decision) -> None:
    """Record a run's end (a failed run's queued steps are already cancelled, never called)."""
    run.finished_at = datetime.now(UTC)
    if decision.failure is not None:
        run.status, run.error = "failed", decision.failure
        events.record(session, run.id, "run.failed", error=decision.failure)
        log.info("run failed", extra={"run_id": str(run.id), "error": decision.failure})
    else:
        run.status, run.output = "succeeded", decision.output
        events.record(session, run.id, "run.succeeded")
        log.info("run succeeded", extra={"run_id": str(run.id)})


def cancel_run(session: Session, run_id: uuid.UUID, team_id: uuid.UUID | None = None) -> Run | None:
    """Cancel a run: queued steps are never called; a step in a call has its answer discarded."""
    run = session.get(Run, run_id, with_for_update={"key_share": True})
    if run is None or (team_id is not None and run.team_id != team_id):
        return None
    if run.status in FINAL_RUN_STATUSES:
        return run
    run.status, run.finished_at, run.error = "cancelled", datetime.now(UTC), "cancelled by request"
    _cancel_pending_steps(session, [run])
    events.record(session, run.id, "run.cancelled")
    return run


def _cancel_pending_steps(session: Session, runs: list[Run]) -> None:
    session.execute(
        update(Step)
        .where(Step.run_id.in_([r.id for r in runs]), Step.status.in_(tuple(PENDING_STEP_STATUSES)))
        .values(status="cancelled", finished_at=datetime.now(UTC), lease_until=None)
    )

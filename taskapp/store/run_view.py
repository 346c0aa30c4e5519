"""What the UI shows of runs beyond their rows: each step's events, the batches its steps shared (and
with how many other runs' steps), the calls each batch made, and a page of runs' stages and cost.

Reads only; the shaping is taskapp.domain.run_view's.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from taskapp.domain.run_view import StepEvent, StepStage
from taskapp.store.models import Batch, Event, LlmCall, Step

STEP_EVENT_TYPES = (
    "step.queued",
    "step.batched",
    "step.started",
    "quota.wait",
    "step.retrying",
    "step.succeeded",
    "step.failed",
)


def step_events(session: Session, run_id: uuid.UUID) -> dict[str, list[StepEvent]]:
    """The run's step events by step id, in order, each at the time it was recorded."""
    rows = session.execute(
        select(Event.type, Event.data, Event.created_at)
        .where(Event.run_id == run_id, Event.type.in_(STEP_EVENT_TYPES))
        .order_by(Event.id)
    )
    out: dict[str, list[StepEvent]] = {}
    for type_, data, created_at in rows:
        step_id = data.get("step_id")
        if not step_id:
            continue
        out.setdefault(str(step_id), []).append(StepEvent(type_, _when(data.get("ts"), created_at), data))
    return out


def _when(ts: object, fallback: datetime) -> datetime:
    if isinstance(ts, str):
        try:
            return datetime.fromisoformat(ts)
        except ValueError:
            pass
    return fallback


@dataclass(frozen=True)
class BatchShare:
    """One batch a run's steps were in: its size, how much of it was other runs', and its calls."""

    id: uuid.UUID
    agent: str
    model: str
    size: int
    reason: str
    flushed_at: datetime
    mean_wait_ms: int
    steps_of_this_run: int
    steps_of_other_runs: int
    other_runs: int
    calls: list[CallRow]


@dataclass(frozen=True)
class CallRow:
    id: uuid.UUID
    step_count: int
    status: str
    latency_ms: int
    tokens_in: int
    tokens_out: int
    cost_usd: Decimal
    error: str | None
    created_at: datetime
    tokens_cached: int = 0


def batch_shares(session: Session, run_id: uuid.UUID, batch_ids: list[uuid.UUID]) -> dict[uuid.UUID, BatchShare]:
    """The batches by id, each with its share of this run and of others (counts only: another run's
    steps are never shown, whoever's they are)."""
    if not batch_ids:
        return {}
    mine = func.count().filter(Step.run_id == run_id)
    others = func.count().filter(Step.run_id != run_id)
    other_runs = func.count(func.distinct(Step.run_id)).filter(Step.run_id != run_id)
    counts = {
        batch_id: (m, o, r)
        for batch_id, m, o, r in session.execute(
            select(Step.batch_id, mine, others, other_runs).where(Step.batch_id.in_(batch_ids)).group_by(Step.batch_id)
        )
    }
    calls: dict[uuid.UUID, list[CallRow]] = {}
    for call in session.scalars(
        select(LlmCall).where(LlmCall.batch_id.in_(batch_ids)).order_by(LlmCall.created_at, LlmCall.id)
    ):
        calls.setdefault(call.batch_id, []).append(
            CallRow(
                call.id,
                call.step_count,
                call.status,
                call.latency_ms,
                call.tokens_in,
                call.tokens_out,
                call.cost_usd,
                call.error,
                call.created_at,
                call.tokens_cached,
            )
        )
    out: dict[uuid.UUID, BatchShare] = {}
    for batch in session.scalars(select(Batch).where(Batch.id.in_(batch_ids))):
        m, o, r = counts.get(batch.id, (0, 0, 0))
        out[batch.id] = BatchShare(
            id=batch.id,
            agent=batch.agent,
            model=batch.model,
            size=batch.size,
            reason=batch.reason,
            flushed_at=batch.flushed_at,
            mean_wait_ms=batch.mean_wait_ms,
            steps_of_this_run=m,
            steps_of_other_runs=o,
            other_runs=r,
            calls=calls.get(batch.id, []),
        )
    return out


@dataclass(frozen=True)
class RunSteps:
    """A run's steps as a runs list needs them: their stages, and what they cost."""

    stages: list[StepStage]
    cost_usd: Decimal
    tokens: int


def runs_steps(session: Session, run_ids: list[uuid.UUID]) -> dict[uuid.UUID, RunSteps]:
    """Per run: each step's stage, status and seq, and the run's cost and tokens (one query)."""
    if not run_ids:
        return {}
    rows = session.execute(
        select(Step.run_id, Step.stage, Step.status, Step.seq, Step.cost_usd, Step.tokens_in + Step.tokens_out)
        .where(Step.run_id.in_(run_ids))
        .order_by(Step.run_id, Step.seq)
    )
    stages: dict[uuid.UUID, list[StepStage]] = {}
    costs: dict[uuid.UUID, Decimal] = {}
    tokens: dict[uuid.UUID, int] = {}
    for run_id, stage, status, seq, cost, used in rows:
        stages.setdefault(run_id, []).append(StepStage(stage, status, seq))
        costs[run_id] = costs.get(run_id, Decimal(0)) + cost
        tokens[run_id] = tokens.get(run_id, 0) + used
    return {r: RunSteps(stages.get(r, []), costs.get(r, Decimal(0)), tokens.get(r, 0)) for r in run_ids}

"""Claiming a batch's steps: who may call them now, under what lease, and giving them back.

A step is claimed with a lease before its call, only while it is still its batch's
(`batch_id`) and `batched`, or `running` under an expired lease (its worker died); a
step claimed `STEP_MAX_ATTEMPTS` times without finishing is failed as poison. The rows
are locked for the claim, so a second delivery of the same batch waits for the first.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from taskapp.llm.gemini import LlmError
from taskapp.store import events
from taskapp.store.lost_calls import record_lost_calls
from taskapp.store.models import Step, of_running_run

log = logging.getLogger(__name__)


def claimable(session: Session, batch_id: uuid.UUID, step_ids: list[uuid.UUID]) -> list[Step]:
    """This batch's steps that a claim would take now, locked for it (in seq order).

    A step counts as this batch's only while its `batch_id` says so: once the sweeper
    re-offered it to another batch, a late delivery of this one finds nothing to do. A
    step running under an expired lease (its worker died) is taken over.

    The flusher publishes a batch's message before it commits the batch: the lock waits
    for that commit (or rollback), and PostgreSQL then returns the rows as committed. A
    statement filtering on the batch in SQL would not wait: it skips rows whose last
    committed version does not match, and the steps would look like no one's. The lock
    is the claim's own (a share lock would let two deliveries of one batch both wait to
    update the rows: a deadlock), so a second delivery waits for the first's commit.
    """
    now = datetime.now(UTC)
    rows = session.scalars(
        select(Step)
        .where(Step.id.in_(step_ids), of_running_run())
        .order_by(Step.id)
        .with_for_update(key_share=True, of=Step)
        .execution_options(populate_existing=True)
    ).all()
    return sorted(
        (
            s
            for s in rows
            if s.batch_id == batch_id
            and (s.status == "batched" or (s.status == "running" and s.lease_until is not None and s.lease_until < now))
        ),
        key=lambda s: s.seq,
    )


def claim(
    session: Session, batch_id: uuid.UUID, steps: list[Step], lease_s: float, max_attempts: int | None
) -> list[Step]:
    """Claim steps that `claimable` locked in this transaction (nothing to check again).

    Steps still `running` were a dead worker's claim: its call is recorded as lost.
    """
    now = datetime.now(UTC)
    record_lost_calls(session, steps)
    if max_attempts is not None:
        poisoned = [s for s in steps if s.attempts >= max_attempts]
        if poisoned:
            _fail_poisoned(session, batch_id, poisoned, max_attempts, now)
            steps = [s for s in steps if s.attempts < max_attempts]
    if not steps:
        return []
    claimed = session.scalars(
        update(Step)
        .where(Step.id.in_([s.id for s in steps]))
        .values(
            status="running", attempts=Step.attempts + 1, started_at=now, lease_until=now + timedelta(seconds=lease_s)
        )
        .returning(Step),
        execution_options={"synchronize_session": False, "populate_existing": True},
    ).all()
    claimed = sorted(claimed, key=event_order)
    for step in claimed:
        events.record_step(
            session,
            step,
            "step.started",
            batch_id=batch_id,
            attempt=step.attempts,
        )
    return list(claimed)


def _fail_poisoned(
    session: Session, batch_id: uuid.UUID, poisoned: list[Step], max_attempts: int, now: datetime
) -> None:
    """A step claimed `max_attempts` times never finished: its deliveries keep dying (a worker
    crash, a hard time limit). Fail it, saying so, instead of delivering it forever."""
    reason = (
        f"poison: claimed {max_attempts} times without finishing (its worker died or hit the time "
        f"limit each time); not retried again"
    )
    session.execute(
        update(Step)
        .where(Step.id.in_([s.id for s in poisoned]))
        .values(status="failed", error=reason, finished_at=now, lease_until=None),
        execution_options={"synchronize_session": False},
    )
    for step in sorted(poisoned, key=event_order):
        log.error(
            "poison step failed after %d attempts",
            step.attempts,
            extra={"run_id": str(step.run_id), "step_id": str(step.id), "batch_id": str(batch_id)},
        )
        events.record_step(
            session,
            step,
            "step.failed",
            batch_id=batch_id,
            error=reason,
        )


def event_order(step: Step) -> tuple[str, int]:
    # A batch's events in a stable order: by run, then by step.
    return (str(step.run_id), step.seq)


def release_steps(session: Session, steps: list[Step], error: LlmError, delay_s: float, stranded_s: float) -> None:
    """Give claimed steps back to their batch after a retryable failure (its retry will claim them)."""
    deadline = datetime.now(UTC) + timedelta(seconds=delay_s + stranded_s)
    released = []
    for step in steps:
        result = session.execute(
            update(Step)
            .where(Step.id == step.id, Step.status == "running", Step.attempts == step.attempts)
            .values(status="batched", lease_until=deadline)
        )
        if cast(CursorResult[Any], result).rowcount:  # an UPDATE's result has a row count
            released.append(step)
    for step in released:
        events.record_step(
            session,
            step,
            "step.retrying",
            batch_id=step.batch_id,
            reason=error.kind,
            delay_s=round(delay_s, 3),
        )

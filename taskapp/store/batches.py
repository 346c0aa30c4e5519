"""Batches in Postgres: a flush marks its steps `batched` and records the batch; the
aggregator totals what the batch did once its calls are over.

Marking is conditional on the step still being `queued` in a live run, so a step
taken by two flushers (a sweeper re-offer racing a slow flush) joins one batch only.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    ScalarSelect,
    Table,
    bindparam,
    case,
    exists,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.orm import InstrumentedAttribute, Session

from taskapp.domain.batching import wait_stats
from taskapp.hotstate.buffers import Taken
from taskapp.store import events
from taskapp.store.models import PENDING_STEP_STATUSES, Batch, LlmCall, Step, of_running_run


def open_batch(
    session: Session,
    batch_id: uuid.UUID,
    agent: str,
    model: str,
    taken: list[Taken],
    reason: str,
    stranded_s: float,
    lane: str | None = None,
) -> list[str]:
    """Mark the taken steps as this batch's; returns the ids that joined (others were gone).
    With `lane`, only steps of that lane join: one prompt never mixes agent versions or teams."""
    if not taken:
        return []
    now = datetime.now(UTC)
    waits = {uuid.UUID(t.step_id): t.wait_ms for t in taken}
    rows = session.execute(
        update(Step)
        .where(
            Step.id.in_(list(waits)),
            Step.status == "queued",
            Step.agent == agent,
            Step.model == model,
            *([Step.lane == lane] if lane is not None else []),
            of_running_run(),
        )
        .values(
            status="batched",
            batch_id=batch_id,
            batched_at=now,
            lease_until=now + timedelta(seconds=stranded_s),
            buffer_wait_ms=case(waits, value=Step.id),
        )
        .returning(Step.id, Step.run_id, Step.seq),
        execution_options={"synchronize_session": False},
    ).all()
    if not rows:
        return []
    joined = sorted(rows, key=lambda r: (str(r.run_id), r.seq))
    stats = wait_stats([waits[r.id] for r in joined])
    batches = cast(Table, Batch.__table__)  # a mapped class's table (SQLAlchemy types it as a FromClause)
    session.connection().execute(
        insert(batches).values(
            id=batch_id,
            agent=agent,
            model=model,
            lane=lane,
            size=len(joined),
            reason=reason,
            mean_wait_ms=stats.mean_ms,
            max_wait_ms=stats.max_ms,
            flushed_at=now,
        )
    )
    for r in joined:
        events.record(
            session,
            r.run_id,
            "step.batched",
            step_id=r.id,
            seq=r.seq,
            agent=agent,
            model=model,
            batch_id=batch_id,
            batch_size=len(joined),
            wait_ms=waits[r.id],
            reason=reason,
        )
    return [str(r.id) for r in joined]


def close_batches(session: Session, batch_ids: list[uuid.UUID]) -> list[uuid.UUID]:
    """Record each batch's outcome from what was committed; returns the runs it touched.

    One statement for all the batches of a chord (each total a lookup by batch id).
    """
    return list(session.scalars(_CLOSE_AND_LIST_RUNS, {"ids": batch_ids, "now": datetime.now(UTC)}))


def close_abandoned_batches(session: Session, batch_ids: set[uuid.UUID]) -> None:
    """Close the batches the sweeper took every pending step back from (their message was
    lost, or their worker died); their totals count what they did, a lost call included.

    Otherwise such a batch would count as work on its way (taskapp.store.in_motion) until
    `BATCH_STRANDED_S`, and later stages would wait out their window meanwhile. A late
    delivery of one finds nothing to do, and its aggregator totals it again.
    """
    if batch_ids:
        session.execute(
            _CLOSE_ABANDONED,
            {"ids": list(batch_ids), "now": datetime.now(UTC)},
            execution_options={"synchronize_session": False},
        )


def _steps_with(status: str) -> ScalarSelect[int]:
    return select(func.count()).where(Step.batch_id == Batch.id, Step.status == status).scalar_subquery()


def _of_calls(total: ColumnElement[Any]) -> ScalarSelect[Any]:
    return select(total).where(LlmCall.batch_id == Batch.id).scalar_subquery()


def _sum(column: InstrumentedAttribute[Any]) -> ColumnElement[Any]:
    return func.coalesce(func.sum(column), 0)


# What a batch did, from what was committed and billed.
_TOTALS = {
    "succeeded": _steps_with("succeeded"),
    "failed": _steps_with("failed"),
    "calls": _of_calls(func.count()),
    "latency_ms": _of_calls(_sum(LlmCall.latency_ms)),
    "tokens_in": _of_calls(_sum(LlmCall.tokens_in)),
    "tokens_out": _of_calls(_sum(LlmCall.tokens_out)),
    "cost_usd": _of_calls(_sum(LlmCall.cost_usd)),
}
# Built once, the aggregator runs it for every chord: the totals (an UPDATE in a WITH is
# carried out whether or not the query reads it), then the runs the batches touched.
_CLOSE = (
    update(Batch).where(Batch.id.in_(bindparam("ids", expanding=True))).values(finished_at=bindparam("now"), **_TOTALS)
)
_CLOSE_AND_LIST_RUNS = (
    select(Step.run_id)
    .add_cte(_CLOSE.cte("closed"))
    .where(Step.batch_id.in_(bindparam("ids", expanding=True)))
    .distinct()
    .order_by(Step.run_id)
)
_CLOSE_ABANDONED = (
    update(Batch)
    .where(
        Batch.id.in_(bindparam("ids", expanding=True)),
        ~exists().where(Step.batch_id == Batch.id, Step.status.in_(tuple(PENDING_STEP_STATUSES))),
    )
    .values(finished_at=func.coalesce(Batch.finished_at, bindparam("now")), **_TOTALS)
)

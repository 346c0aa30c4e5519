"""Runs: creating, reading and paging them, and their step totals. Functions flush; the caller commits."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from taskapp.store import events
from taskapp.store.models import FINAL_STEP_STATUSES, Run, Step


def create_run(
    session: Session,
    *,
    team_id: uuid.UUID,
    workflow: str,
    input: dict[str, Any],
    options: dict[str, Any],
    idempotency_key: str | None = None,
    request_hash: str | None = None,
    workflow_version_id: uuid.UUID | None = None,
) -> tuple[Run, bool]:
    """Insert a queued run and its first event; with a known idempotency key, return that run."""
    run_id = uuid.uuid4()
    insert = pg_insert(Run).values(
        id=run_id,
        team_id=team_id,
        workflow=workflow,
        workflow_version_id=workflow_version_id,
        input=input,
        options=options,
        status="queued",
        idempotency_key=idempotency_key,
        request_hash=request_hash,
    )
    if idempotency_key:
        # Concurrent duplicates race on the unique key; the loser reads the winner's run.
        insert = insert.on_conflict_do_nothing(constraint="uq_runs_team_idempotency_key")
    run = session.scalars(insert.returning(Run)).first()
    if run is None:
        # Only a keyed insert skips on conflict, and it waited for the winner to commit.
        assert idempotency_key is not None
        winner = run_by_key(session, team_id, idempotency_key)
        assert winner is not None
        return winner, False
    events.record(session, run.id, "run.queued", workflow=workflow)
    return run, True


def run_by_key(session: Session, team_id: uuid.UUID, key: str) -> Run | None:
    return session.scalar(select(Run).where(Run.team_id == team_id, Run.idempotency_key == key))


def get_run(session: Session, team_id: uuid.UUID, run_id: uuid.UUID) -> Run | None:
    """A run, if this team owns it (another team's run does not exist for them)."""
    return session.scalar(select(Run).where(Run.id == run_id, Run.team_id == team_id))


def run_steps(session: Session, run_id: uuid.UUID) -> list[Step]:
    return list(session.scalars(select(Step).where(Step.run_id == run_id).order_by(Step.seq)))


@dataclass(frozen=True)
class RunTotals:
    steps: int
    steps_done: int
    tokens_in: int
    tokens_out: int
    tokens_cached: int
    cost_usd: Decimal
    llm_calls: int


def run_totals(steps: list[Step]) -> RunTotals:
    return RunTotals(
        steps=len(steps),
        steps_done=sum(1 for s in steps if s.status in FINAL_STEP_STATUSES),
        tokens_in=sum(s.tokens_in for s in steps),
        tokens_out=sum(s.tokens_out for s in steps),
        tokens_cached=sum(s.tokens_cached or 0 for s in steps),
        cost_usd=sum((s.cost_usd for s in steps), Decimal(0)),
        llm_calls=len({s.llm_call_id for s in steps if s.llm_call_id}),
    )


def runs_page(
    session: Session,
    team_id: uuid.UUID,
    *,
    status: str | None = None,
    workflow: str | None = None,
    limit: int = 20,
    cursor: str | None = None,
) -> tuple[list[Run], str | None]:
    """Newest first, keyset-paginated on (created_at, id); `status` and `workflow` filter."""
    query = select(Run).where(Run.team_id == team_id)
    if status:
        query = query.where(Run.status == status)
    if workflow:
        query = query.where(Run.workflow == workflow)
    if cursor:
        created, run_id = decode_cursor(cursor)
        query = query.where((Run.created_at < created) | ((Run.created_at == created) & (Run.id < run_id)))
    rows = list(session.scalars(query.order_by(Run.created_at.desc(), Run.id.desc()).limit(limit + 1)))
    next_cursor = encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return rows[:limit], next_cursor


def encode_cursor(run: Run) -> str:
    raw = f"{run.created_at.isoformat()}|{run.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """Raises ValueError on a cursor we did not issue."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, run_id = raw.split("|", 1)
        return datetime.fromisoformat(created), uuid.UUID(run_id)
    except Exception as exc:
        raise ValueError("invalid cursor") from exc


def step_progress(session: Session, run_ids: list[uuid.UUID]) -> dict[uuid.UUID, tuple[int, int]]:
    """(done, total) steps per run, for progress bars."""
    if not run_ids:
        return {}
    done = func.count().filter(Step.status.in_(tuple(FINAL_STEP_STATUSES)))
    rows = session.execute(
        select(Step.run_id, done, func.count()).where(Step.run_id.in_(run_ids)).group_by(Step.run_id)
    )
    return {run_id: (d, t) for run_id, d, t in rows}

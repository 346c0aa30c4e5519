"""Reads what is on its way to the batch buffers, for the idle flush (taskapp.domain.batching).

Postgres says which runs and batches are in motion; Redis says which queued steps
already wait in a buffer. Each question is one indexed statement, asked in order of
how often it ends the inquiry: under load a batch is almost always in flight, so a
busy fleet pays one cheap query per check.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from taskapp.domain.batching import Outlook
from taskapp.hotstate.buffers import Batcher
from taskapp.store.models import Batch, Run, Step, of_running_run

# Queued steps looked up in the buffers at most; more than this and some are surely on their way.
MAX_STEPS_CHECKED = 1_000


def read_outlook(session: Session, batcher: Batcher, stranded_s: float) -> Outlook:
    """The outlook, with every question after the first that says "yes" left unasked (False).

    A batch flushed more than `stranded_s` ago and never finished is the sweeper's to
    recover, not a call in flight (or a lost chord callback would stop idle flushes).
    """
    now = datetime.now(UTC)
    checks = (
        ("runs_to_start", lambda: session.scalar(select(exists().where(Run.status == "queued")))),
        (
            "batches_in_flight",
            lambda: session.scalar(
                select(
                    exists().where(Batch.finished_at.is_(None), Batch.flushed_at > now - timedelta(seconds=stranded_s))
                )
            ),
        ),
        (
            "runs_between_steps",
            lambda: session.scalar(
                select(
                    exists().where(
                        Run.status == "running", ~exists().where(Step.run_id == Run.id, Step.status == "queued")
                    )
                )
            ),
        ),
        ("steps_unbuffered", lambda: _steps_unbuffered(session, batcher)),
    )
    answers: dict[str, bool] = {}
    for name, ask in checks:
        answers[name] = bool(ask())
        if answers[name]:
            break
    return Outlook(**{name: answers.get(name, False) for name, _ in checks})


def _steps_unbuffered(session: Session, batcher: Batcher) -> bool:
    rows = session.execute(
        select(Step.id, func.coalesce(Step.lane, Step.agent), Step.model, Step.kind)
        .where(Step.status == "queued", of_running_run())
        .limit(MAX_STEPS_CHECKED)
    ).all()
    if len(rows) >= MAX_STEPS_CHECKED:
        return True
    by_buffer: dict[tuple[str, str], list[str]] = defaultdict(list)
    for step_id, lane, model, kind in rows:
        if kind != "agent":
            return True  # a tool call waiting to run: its agent's next call follows it
        by_buffer[(lane, model)].append(str(step_id))
    return any(len(batcher.waiting(lane, model, ids)) < len(ids) for (lane, model), ids in by_buffer.items())

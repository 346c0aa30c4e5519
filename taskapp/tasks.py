"""Celery tasks: thin wrappers that pass ids, call domain code, commit, then dispatch.

Task names and arguments carry the run and step ids so Flower tells an operator
which run a task serves.
"""

from __future__ import annotations

import logging
import uuid

from taskapp import executor, orchestrator
from taskapp.backoff import backoff_s, jittered
from taskapp.celery_app import app
from taskapp.db import session_factory
from taskapp.llm.gemini import get_client
from taskapp.queues import llm_queue
from taskapp.settings import get_settings

log = logging.getLogger(__name__)


@app.task(name="taskapp.start_run")
def start_run(run_id: str) -> None:
    """First move of a run (published by the API)."""
    _advance(run_id)


@app.task(name="taskapp.advance_run")
def advance_run(run_id: str) -> None:
    """Decide and queue a run's next steps, or finish it.

    Batches advance their runs inline; this task is the nudge for everything else
    (an operator's `celery call taskapp.advance_run`, the sweeper). Idempotent.
    """
    _advance(run_id)


def _advance(run_id: str) -> None:
    with session_factory().begin() as session:
        dispatches = orchestrator.advance_run(session, uuid.UUID(run_id), get_settings())
    dispatch(dispatches)


def dispatch(dispatches: list[orchestrator.Dispatch]) -> None:
    """Send ready steps to their model's queue (one message per batch)."""
    for d in dispatches:
        execute_steps.apply_async(
            args=[list(d.step_ids)],
            kwargs={"agent": d.agent, "model": d.model, "run_ids": list(d.run_ids)},
            queue=llm_queue(d.model),
        )


@app.task(bind=True, name="taskapp.execute_steps", max_retries=None)
def execute_steps(self, step_ids: list[str], agent: str, model: str, run_ids: list[str] | None = None) -> dict:
    """One Gemini call for a batch of steps of one agent and model."""
    settings = get_settings()
    attempt = self.request.retries
    try:
        outcome = executor.execute_batch(
            session_factory(), get_client(settings), step_ids,
            lease_s=app.conf.task_time_limit + 30,
            retry_delay_s=backoff_s(attempt),
            give_up=attempt >= settings.llm_max_retries,
        )
    except executor.RetryLater as exc:
        log.warning("retrying batch: %s", exc, extra={"agent": agent, "model": model})
        raise self.retry(countdown=jittered(exc.delay_s)) from None
    # Advance in this task rather than through another message: one broker hop less per step.
    for run_id in sorted(outcome.run_ids):
        _advance(run_id)
    return {"batch_id": str(outcome.batch_id), "succeeded": outcome.succeeded, "failed": outcome.failed,
            "skipped": outcome.skipped}

"""Accepting a run: validate against the workflow, insert it with its first event, publish one message.

Nothing slow happens here (no LLM, no waiting on workers): the API answers as soon
as the row is committed and the message is handed to the broker.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from taskapp import store
from taskapp.celery_app import app as celery_app
from taskapp.models import Run, Step
from taskapp.queues import ORCHESTRATION_QUEUE
from taskapp.workflows import UnknownWorkflow, get_workflow


class InvalidRun(ValueError):
    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.details = details


class Overloaded(RuntimeError):
    """More work is waiting than the fleet should queue: the client should come back later."""

    def __init__(self, waiting: int, limit: int, retry_after_s: int = 5) -> None:
        super().__init__(f"{waiting} runs and steps are waiting (limit {limit}); try again in {retry_after_s}s")
        self.retry_after_s = retry_after_s


class EnqueueFailed(RuntimeError):
    """The run is stored but the broker did not take its message (safe to retry with the same key)."""


def validate_input(workflow: str, payload: dict[str, Any]) -> dict[str, Any]:
    try:
        wf = get_workflow(workflow)
    except UnknownWorkflow:
        raise InvalidRun(f"unknown workflow {workflow!r}") from None
    try:
        return wf.input_schema.model_validate(payload).model_dump(mode="json")
    except ValidationError as exc:
        details = [{"field": ".".join(map(str, e["loc"])), "message": e["msg"]} for e in exc.errors()]
        raise InvalidRun(f"input does not match workflow {workflow!r}", details) from None


def submit_run(session: Session, *, team_id: uuid.UUID, workflow: str, input: dict[str, Any],
               options: dict[str, Any], idempotency_key: str | None = None,
               max_waiting: int = 0) -> tuple[Run, bool]:
    """Store (commit) and enqueue a run; the same idempotency key returns the run it made first.

    Backpressure: with `max_waiting`, a new run is refused (Overloaded) while that many
    runs and steps already wait to start (a replay of a stored run is always answered).

    Uses the caller's session, so a request holds one pooled connection, not two.
    """
    clean = validate_input(workflow, input)
    if max_waiting:
        waiting = _waiting_work(session)  # cached: no query per request
        if waiting >= max_waiting and not (idempotency_key and store.run_by_key(session, team_id, idempotency_key)):
            raise Overloaded(waiting, max_waiting)
    run, created = store.create_run(session, team_id=team_id, workflow=workflow, input=clean,
                                    options=options, idempotency_key=idempotency_key)
    session.commit()
    if created or run.status == "queued":
        # A replay of a run still queued re-sends its start: starting is idempotent.
        publish_start(run.id)
    return run, created


_waiting_cache: tuple[float, int] = (0.0, 0)


def _waiting_work(session: Session, max_age_s: float = 1.0) -> int:
    """Runs not started plus steps not yet called (cached a second: one count per process, not per request)."""
    global _waiting_cache
    now = time.monotonic()
    if now - _waiting_cache[0] > max_age_s:
        runs = session.scalar(select(func.count()).select_from(Run).where(Run.status == "queued"))
        steps = session.scalar(select(func.count()).select_from(Step).where(Step.status.in_(("queued", "batched"))))
        _waiting_cache = (now, runs + steps)
    return _waiting_cache[1]


def publish_start(run_id: uuid.UUID) -> None:
    try:
        celery_app.send_task("taskapp.start_run", args=[str(run_id)], queue=ORCHESTRATION_QUEUE,
                             retry=True, retry_policy={"max_retries": 2, "interval_start": 0.1,
                                                       "interval_step": 0.2, "interval_max": 0.5})
    except Exception as exc:  # noqa: BLE001 (kombu raises many kinds; all mean "not enqueued")
        raise EnqueueFailed(f"broker unavailable: {exc}") from exc

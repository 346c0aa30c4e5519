"""Accepting a run: validate against the workflow, insert it with its first event, publish one message.

Nothing slow happens here (no LLM, no waiting on workers): the API answers as soon
as the row is committed and the message is handed to the broker.
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from taskapp import store
from taskapp.celery_app import app as celery_app
from taskapp.models import Run
from taskapp.queues import ORCHESTRATION_QUEUE
from taskapp.workflows import UnknownWorkflow, get_workflow


class InvalidRun(ValueError):
    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.details = details


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
               options: dict[str, Any], idempotency_key: str | None = None) -> tuple[Run, bool]:
    """Store (commit) and enqueue a run; the same idempotency key returns the run it made first.

    Uses the caller's session, so a request holds one pooled connection, not two.
    """
    clean = validate_input(workflow, input)
    run, created = store.create_run(session, team_id=team_id, workflow=workflow, input=clean,
                                    options=options, idempotency_key=idempotency_key)
    session.commit()
    if created or run.status == "queued":
        # A replay of a run still queued re-sends its start: starting is idempotent.
        publish_start(run.id)
    return run, created


def publish_start(run_id: uuid.UUID) -> None:
    try:
        celery_app.send_task("taskapp.start_run", args=[str(run_id)], queue=ORCHESTRATION_QUEUE,
                             retry=True, retry_policy={"max_retries": 2, "interval_start": 0.1,
                                                       "interval_step": 0.2, "interval_max": 0.5})
    except Exception as exc:  # noqa: BLE001 (kombu raises many kinds; all mean "not enqueued")
        raise EnqueueFailed(f"broker unavailable: {exc}") from exc

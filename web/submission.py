"""Submitting a run: the one path from a request to a stored, enqueued run, for the API and the UI form.

Both validate the same request (RunCreate, then the workflow's input schema), meet the
same backpressure and idempotency rules, and get the same refusals as ApiErrors; the
API answers them as JSON, the form shows them beside its fields.
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import ValidationError

from taskapp.pipeline import intake
from taskapp.store.models import Run
from web.context import db, settings
from web.errors import ApiError
from web.schemas import RunCreate

MAX_IDEMPOTENCY_KEY = 200


def submit(team_id: uuid.UUID, body: Any, idempotency_key: str | None = None) -> tuple[Run, bool]:
    """Validate, store (commit) and enqueue a run: (run, created). Refusals raise ApiError."""
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "request body must be a JSON object")
    try:
        spec = RunCreate.model_validate(body)
    except ValidationError as exc:
        raise ApiError(422, "invalid_request", "request body is invalid", intake.field_errors(exc)) from None
    if idempotency_key is not None and not valid_idempotency_key(idempotency_key):
        raise ApiError(
            400,
            "invalid_idempotency_key",
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters",
        )
    try:
        return intake.submit_run(
            db(),
            team_id=team_id,
            workflow=spec.workflow,
            input=spec.input,
            options=spec.options.model_dump(exclude_none=True),
            idempotency_key=idempotency_key,
            max_waiting=settings().max_waiting_work,
            version=spec.version,
        )
    except intake.Overloaded as exc:
        raise ApiError(429, "overloaded", str(exc), headers={"Retry-After": str(exc.retry_after_s)}) from None
    except intake.InvalidRun as exc:
        raise ApiError(422, "invalid_input", str(exc), exc.details) from None
    except intake.IdempotencyConflict as exc:
        raise ApiError(409, "idempotency_conflict", str(exc), {"run_id": str(exc.run_id)}) from None
    except intake.EnqueueFailed as exc:
        raise ApiError(503, "unavailable", str(exc), headers={"Retry-After": "5"}) from None


def valid_idempotency_key(key: str) -> bool:
    """Printable ASCII: a key is stored and compared as text (a NUL cannot be stored)."""
    return 1 <= len(key) <= MAX_IDEMPOTENCY_KEY and key.isascii() and key.isprintable()

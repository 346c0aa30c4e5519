"""Accepting a run: pin it to a workflow version, validate its input, insert it with its first
event, publish one message.

Nothing slow happens here (no LLM, no waiting on workers): the API answers as soon
as the row is committed and the message is handed to the broker.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
import uuid
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.orm import Session

from taskapp.celery_app import app as celery_app
from taskapp.domain.definitions.checks import Definition
from taskapp.domain.definitions.inputs import input_errors
from taskapp.keys import ORCHESTRATION_QUEUE, START_RUN_TASK
from taskapp.store import workflows
from taskapp.store.models import Run, Step
from taskapp.store.runs import create_run, run_by_key

log = logging.getLogger(__name__)


# What a workflow can be called (taskapp.domain.definitions.model.Name): anything else names none,
# and is refused before it reaches a query (a NUL would be a database error, not a 4xx).
WORKFLOW_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
MAX_VERSION = 2**31 - 1


class InvalidRun(ValueError):
    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.details = details


class Overloaded(RuntimeError):
    """More work is waiting than the fleet should queue: the client should come back later."""

    def __init__(self, waiting: int, limit: int, retry_after_s: int = 5) -> None:
        # The fleet's backlog is operators' business: the caller hears only when to come back.
        super().__init__(f"taskapp is busy (too much work waiting to start); try again in {retry_after_s}s")
        self.waiting, self.limit, self.retry_after_s = waiting, limit, retry_after_s


class IdempotencyConflict(ValueError):
    """The Idempotency-Key already made a run from a different request: reused for something else."""

    def __init__(self, run_id: uuid.UUID) -> None:
        super().__init__(
            f"this Idempotency-Key was already used for a different request (run {run_id}); "
            "send a new key for a new run"
        )
        self.run_id = run_id


class EnqueueFailed(RuntimeError):
    """The run is stored but the broker did not take its message (safe to retry with the same key)."""


def field_errors(exc: ValidationError) -> list[dict[str, str]]:
    """A validation error as the API's `details`: each field at fault (dotted path) and why."""
    return [{"field": ".".join(map(str, e["loc"])), "message": e["msg"]} for e in exc.errors()]


def validate_input(definition: Definition, payload: dict[str, Any]) -> dict[str, Any]:
    """The run's input, cleaned and checked against the workflow's input schema; InvalidRun
    names each field at fault."""
    clean, errors = input_errors(definition.input_schema, payload)
    if errors:
        raise InvalidRun(f"input does not match workflow {definition.name!r}", errors)
    unstorable = unstorable_strings(clean)
    if unstorable:
        raise InvalidRun(
            f"input does not match workflow {definition.name!r}",
            [{"field": field, "message": UNSTORABLE} for field in unstorable],
        )
    return clean


def resolve_workflow(
    session: Session, team_id: uuid.UUID, workflow: str, version: int | None = None
) -> tuple[uuid.UUID, Definition]:
    """The version a new run starts with (the latest, or the one asked for) and its definition;
    InvalidRun when the team has no such workflow or version."""
    if not WORKFLOW_NAME.fullmatch(workflow) or (version is not None and not 1 <= version <= MAX_VERSION):
        raise InvalidRun(f"unknown workflow {workflow!r}" if version is None else f"unknown workflow version {version}")
    try:
        found = workflows.resolve_id(session, team_id, workflow, version)
    except workflows.UnknownWorkflow:
        raise InvalidRun(f"unknown workflow {workflow!r}") from None
    except workflows.UnknownVersion as exc:
        raise InvalidRun(str(exc)) from None
    return found, workflows.definition_of(session, found)


UNSTORABLE = "contains a character that cannot be stored (NUL, or an unpaired surrogate)"


def unstorable_strings(value: Any, path: str = "") -> list[str]:
    """Where a string (or key) PostgreSQL refuses sits in a JSON value: NUL has no place in
    jsonb or text, and a lone surrogate is not UTF-8. Refused here, not with a 500 on insert."""
    found: list[str] = []
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if not _storable(item):
                found.append(where)
        elif isinstance(item, dict):
            for key, child in item.items():
                child_path = f"{where}.{key}" if where else str(key)
                if not _storable(str(key)):
                    found.append(child_path)
                stack.append((child, child_path))
        elif isinstance(item, list):
            stack.extend((child, f"{where}.{i}" if where else str(i)) for i, child in enumerate(item))
    return sorted(found)


def _storable(text: str) -> bool:
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def submit_run(
    session: Session,
    *,
    team_id: uuid.UUID,
    workflow: str,
    input: dict[str, Any],
    options: dict[str, Any],
    idempotency_key: str | None = None,
    max_waiting: int = 0,
    version: int | None = None,
) -> tuple[Run, bool]:
    """Store (commit) and enqueue a run; the same idempotency key returns the run it made first.

    That key with a different request (another fingerprint) is an IdempotencyConflict,
    however many duplicates race: the loser of the insert compares with the winner's run.

    Backpressure: with `max_waiting`, a new run is refused (Overloaded) while that many
    runs and steps already wait to start (a replay of a stored run is always answered).

    Uses the caller's session, so a request holds one pooled connection, not two.
    """
    version_id, definition = resolve_workflow(session, team_id, workflow, version)
    clean = validate_input(definition, input)
    fingerprint = request_fingerprint(workflow, clean, options, version) if idempotency_key else None
    if max_waiting:
        waiting = _waiting_work(session)  # counted in the background: no query per request
        if waiting >= max_waiting and not (idempotency_key and run_by_key(session, team_id, idempotency_key)):
            log.warning(
                "backpressure: %d runs and steps waiting (MAX_WAITING_WORK %d); refusing a run",
                waiting,
                max_waiting,
                extra={"team_id": str(team_id)},
            )
            raise Overloaded(waiting, max_waiting)
    run, created = create_run(
        session,
        team_id=team_id,
        workflow=workflow,
        input=clean,
        options=options,
        idempotency_key=idempotency_key,
        request_hash=fingerprint,
        workflow_version_id=version_id,
    )
    if not created and run.request_hash is not None and run.request_hash != fingerprint:
        raise IdempotencyConflict(run.id)  # nothing was written: the caller's session rolls back
    session.commit()
    if created or run.status == "queued":
        # A replay of a run still queued re-sends its start: starting is idempotent.
        publish_start(run.id)
    return run, created


def request_fingerprint(
    workflow: str, input: dict[str, Any], options: dict[str, Any], version: int | None = None
) -> str:
    """What makes two submissions the same request: the validated workflow, input and options
    as canonical JSON (key order, spacing, surrounding whitespace and spelt-out defaults do
    not count), hashed. Stored with an idempotency key to tell a retry from a reuse."""
    request: dict[str, Any] = {"workflow": workflow, "input": input, "options": options}
    if version is not None:  # a request without a version keeps the fingerprint it always had
        request["version"] = version
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class WaitingWork:
    """Runs not started plus steps not yet called, as backpressure sees them.

    Counted at most once a second per process, and never on a request's path once a
    first count exists: a stale count is answered at once while a background thread
    (a greenlet under gevent) counts again. Counting inline made one request a
    second per process wait for it (the enqueue p99 at 100 req/s).
    """

    def __init__(self, max_age_s: float = 1.0) -> None:
        self.max_age_s = max_age_s
        self._value: int | None = None
        self._at = 0.0
        self._refreshing = threading.Lock()

    def get(self, session: Session) -> int:
        if self._value is None:
            self._store(count_waiting(session))
        elif time.monotonic() - self._at > self.max_age_s and self._refreshing.acquire(blocking=False):
            threading.Thread(
                target=self._refresh, args=(session.get_bind(),), daemon=True, name="waiting-work-count"
            ).start()
        return self._value  # type: ignore[return-value]

    def _refresh(self, bind: Engine | Connection) -> None:
        try:
            with Session(bind) as session:
                self._store(count_waiting(session))
        except Exception as exc:  # noqa: BLE001 (the last count stands; the next request retries)
            log.warning("counting waiting work failed: %s", exc)
        finally:
            self._refreshing.release()

    @property
    def counted_at(self) -> float:
        """When the count in hand was taken (time.monotonic())."""
        return self._at

    def _store(self, value: int) -> None:
        self._value, self._at = value, time.monotonic()


def count_waiting(session: Session) -> int:
    runs = session.scalar(select(func.count()).select_from(Run).where(Run.status == "queued"))
    steps = session.scalar(select(func.count()).select_from(Step).where(Step.status.in_(("queued", "batched"))))
    return int(runs or 0) + int(steps or 0)


_waiting = WaitingWork()


def _waiting_work(session: Session) -> int:
    return _waiting.get(session)


def publish_start(run_id: uuid.UUID) -> None:
    try:
        # ignore_result: send_task does not read task_ignore_result. Without it, each send
        # asks the result backend to watch for a result that never comes, and the backend
        # is per thread, so under gevent each new connection's greenlet first builds one
        # (7-35 ms: it scans the installed packages' entry points): the enqueue tail.
        celery_app.send_task(
            START_RUN_TASK,
            args=[str(run_id)],
            queue=ORCHESTRATION_QUEUE,
            ignore_result=True,
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.1, "interval_step": 0.2, "interval_max": 0.5},
        )
    except Exception as exc:
        raise EnqueueFailed(f"broker unavailable: {exc}") from exc

"""Every state change: an event row in Postgres, published to Redis once the row commits.

Rows are the record (resume and replay read them); the publish is the fast path
for live streams, in flask-sse's wire format so the web layer's SSE blueprint can
relay it, and workers never import Flask. A publish that fails loses nothing:
streams fall back to the table.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from taskapp.models import Event
from taskapp.redis_client import get_redis

log = logging.getLogger(__name__)

EVENT_TYPES = (
    "run.queued", "run.started", "step.queued", "step.batched", "step.started", "step.succeeded",
    "step.failed", "step.retrying", "quota.wait", "run.succeeded", "run.failed", "run.cancelled",
)
_PENDING = "taskapp.pending_events"
_LOCKED = "taskapp.locked_runs"


def channel_for(run_id: uuid.UUID | str) -> str:
    return f"taskapp:run:{run_id}"


def record(session: Session, run_id: uuid.UUID, type_: str, *, lock: bool = True, **data: Any) -> Event:
    """Add an event for `run_id`; it is published after the session commits."""
    if type_ not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type_!r}")
    if lock:
        _lock_run_events(session, run_id)
    payload = {"run_id": str(run_id), "ts": datetime.now(UTC).isoformat(), **_jsonable(data)}
    row = Event(run_id=run_id, type=type_, data=payload)
    session.add(row)
    session.flush()
    session.info.setdefault(_PENDING, []).append(
        (channel_for(run_id), json.dumps({"data": payload, "type": type_, "id": row.id, "retry": None}))
    )
    return row


def _lock_run_events(session: Session, run_id: uuid.UUID) -> None:
    """Per-run transaction lock: a run's event ids commit in id order, so resume never skips one."""
    locked = session.info.setdefault(_LOCKED, set())
    if run_id not in locked:
        session.execute(select(func.pg_advisory_xact_lock(_lock_key(run_id))))
        locked.add(run_id)


def _lock_key(run_id: uuid.UUID) -> int:
    return (run_id.int & 0x7FFF_FFFF_FFFF_FFFF) ^ 0x5EED


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, uuid.UUID) else v) for k, v in data.items()}


@sa_event.listens_for(Session, "after_commit")
def _publish_after_commit(session: Session) -> None:
    pending = session.info.pop(_PENDING, None)
    session.info.pop(_LOCKED, None)
    url = session.info.get("redis_url")
    if not pending or not url:
        return
    try:
        pipe = get_redis(url).pipeline(transaction=False)
        for channel, message in pending:
            pipe.publish(channel, message)
        pipe.execute()
    except Exception as exc:  # noqa: BLE001 (Redis down must never undo a committed change)
        log.warning("event publish failed, streams will read Postgres: %s", exc)


@sa_event.listens_for(Session, "after_rollback")
def _drop_after_rollback(session: Session) -> None:
    session.info.pop(_PENDING, None)
    session.info.pop(_LOCKED, None)

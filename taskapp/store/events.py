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
from sqlalchemy import text
from sqlalchemy.orm import Session

from taskapp.domain.status import EVENT_TYPES
from taskapp.hotstate.client import get_redis
from taskapp.keys import run_channel
from taskapp.store.models import Event

log = logging.getLogger(__name__)

_PENDING = "taskapp.pending_events"
_READY = "taskapp.flushed_events"
# The locks first (the filter's one-time subquery runs before any row is produced), then
# the rows in their order (ordinality), each id drawn from the sequence as it is inserted.
_LOCK_AND_INSERT = text(f"""
WITH locked AS (SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:keys AS bigint[])) AS k)
INSERT INTO {Event.__tablename__} (run_id, type, data)
SELECT CAST(e.doc ->> 'run_id' AS uuid), e.doc ->> 'type', e.doc -> 'data'
FROM jsonb_array_elements(CAST(:rows AS jsonb)) WITH ORDINALITY AS e(doc, n)
WHERE (SELECT count(*) FROM locked) >= 0
ORDER BY e.n
RETURNING id
""")


def record(session: Session, run_id: uuid.UUID, type_: str, **data: Any) -> None:
    """Add an event for `run_id`: written just before the session commits (a transaction's
    events go in one statement, not through the unit of work) and published after it."""
    if type_ not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type_!r}")
    payload = {"run_id": str(run_id), "ts": datetime.now(UTC).isoformat(), **_jsonable(data)}
    session.info.setdefault(_PENDING, []).append((run_id, type_, payload))


def record_step(session: Session, step: Any, type_: str, **data: Any) -> None:
    """A step event: every one carries the step's id, seq and agent (and the run's id)."""
    record(session, step.run_id, type_, step_id=step.id, seq=step.seq, agent=step.agent, **data)


def _lock_key(run_id: uuid.UUID) -> int:
    return (run_id.int & 0x7FFF_FFFF_FFFF_FFFF) ^ 0x5EED


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, uuid.UUID) else v) for k, v in data.items()}


@sa_event.listens_for(Session, "before_commit")
def _insert_pending(session: Session) -> None:
    """Write the transaction's events, in the order they were recorded, and ready their
    messages for after the commit.

    One statement takes the runs' locks and then inserts: per-run transaction locks, so a
    run's event ids commit in id order and a client resuming after event N never misses
    one committed later with a smaller id. They are the transaction's last locks (its row
    locks all come before), taken in run-id order, so two writers never deadlock on them.
    """
    pending = session.info.pop(_PENDING, None)
    if not pending:
        return
    session.flush()  # the rows they refer to (a new run) first
    keys = [_lock_key(r) for r in sorted({run_id for run_id, _, _ in pending}, key=str)]
    rows = json.dumps([{"run_id": str(run_id), "type": type_, "data": payload} for run_id, type_, payload in pending])
    # Ids are drawn in the rows' order; sorting them undoes any order RETURNING might use.
    ids = sorted(session.connection().scalars(_LOCK_AND_INSERT, {"keys": keys, "rows": rows}).all())
    ready = session.info.setdefault(_READY, [])
    for (run_id, type_, payload), event_id in zip(pending, ids, strict=True):
        ready.append((run_channel(run_id), json.dumps({"data": payload, "type": type_, "id": event_id, "retry": None})))


@sa_event.listens_for(Session, "after_commit")
def _publish_after_commit(session: Session) -> None:
    ready = session.info.pop(_READY, None)
    session.info.pop(_PENDING, None)
    url = session.info.get("redis_url")
    if not ready or not url:
        return
    try:
        pipe = get_redis(url).pipeline(transaction=False)
        for channel, message in ready:
            pipe.publish(channel, message)
        pipe.execute()
    except Exception as exc:  # noqa: BLE001 (Redis down must never undo a committed change)
        log.warning("event publish failed, streams will read Postgres: %s", exc)


@sa_event.listens_for(Session, "after_rollback")
def _drop_after_rollback(session: Session) -> None:
    session.info.pop(_PENDING, None)
    session.info.pop(_READY, None)

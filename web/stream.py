"""Server-Sent Events for a run: flask-sse's blueprint, taught to resume.

flask-sse relays Redis pub/sub and keeps nothing, so a client that reconnects would
miss what happened meanwhile. Here Redis is only the wake-up call: what is sent is
always read from the events table (id > the last one sent, in id order), so each
event reaches a client once and in order, across reconnects (`Last-Event-ID`), web
restarts, publishes that arrive out of order, and publishes that never arrive. If
Redis is down the stream tails the table instead, and goes back to live when it returns.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator

import redis
from flask import current_app, g, request, stream_with_context
from flask_sse import Message, ServerSentEventsBlueprint
from sqlalchemy import ColumnElement, Connection, func, or_, select

from taskapp.domain.status import FINAL_EVENTS
from taskapp.hotstate.client import get_redis
from taskapp.keys import run_channel
from taskapp.store.models import FINAL_RUN_STATUSES, Event
from taskapp.store.teams import still_valid
from web.auth import require_team, team_run
from web.context import db as request_session
from web.context import engine
from web.errors import ApiError
from web.openapi import answers, documented
from web.schemas import RunEventsHeaders, RunEventsQuery

log = logging.getLogger(__name__)
# A keep-alive comment every SSE_KEEPALIVE_S (15 s) keeps proxies from cutting idle streams.
AUTH_RECHECK_S = 10.0  # an open stream re-checks its key and session this often
SAFETY_POLL_S = 30.0  # even with Redis up, re-read the table this often (a publish that was lost)
FALLBACK_POLL_S = 1.0  # without Redis, tail the table this often
REDIS_RETRY_S = 5.0
BATCH = 500
MAX_EVENT_ID = 2**63 - 1  # events.id is a bigint


class RunEventsBlueprint(ServerSentEventsBlueprint):
    """Streams one run's events: replay from Postgres, then follow Redis (or poll)."""

    @property
    def redis(self) -> redis.Redis:
        return get_redis(current_app.config["SSE_REDIS_URL"])

    def run_messages(
        self, run_id: uuid.UUID, last_id: int, allowed: Callable[[Connection], bool] = lambda _: True
    ) -> Iterator[Message | str]:
        """Messages after `last_id` until the run's final event; str items are keep-alive comments.

        `allowed` is asked every AUTH_RECHECK_S: a stream whose key is revoked, or whose
        browser session signed out, ends then (it outlives the request that checked them).
        """
        bound = engine()
        keepalive_s = current_app.config["SSE_KEEPALIVE_S"]
        query = select(Event.id, Event.type, Event.data).where(Event.run_id == run_id).order_by(Event.id).limit(BATCH)
        pubsub = None
        retry_redis_at = 0.0
        last_write = last_read = 0.0
        checked = time.monotonic()
        must_read = True
        try:
            while True:
                now = time.monotonic()
                if now - checked >= AUTH_RECHECK_S:
                    with bound.connect() as conn:
                        if not allowed(conn):
                            return
                    checked = now
                if pubsub is None and now >= retry_redis_at:
                    pubsub = self._subscribe(run_id)  # before reading, so nothing slips between
                    retry_redis_at = now + REDIS_RETRY_S
                    must_read = True
                if must_read or now - last_read >= SAFETY_POLL_S:
                    with bound.connect() as conn:  # Core, not a Session: once per wake-up per stream
                        rows = conn.execute(query.where(_after(last_id))).all()
                    last_read = time.monotonic()
                    for event_id, type_, data in rows:
                        if event_id <= last_id:
                            return  # the run's final event, already behind the client
                        last_id = event_id
                        yield Message(data, type=type_, id=event_id)
                        if type_ in FINAL_EVENTS:
                            return
                    if rows:
                        last_write = last_read
                        if len(rows) == BATCH:
                            continue
                woke, pubsub = self._wait(pubsub, keepalive_s)
                must_read = woke or pubsub is None
                if not woke and time.monotonic() - last_write >= keepalive_s:
                    last_write = time.monotonic()
                    yield ": keep-alive\n\n"  # also how a departed client is noticed
        finally:
            if pubsub is not None:
                try:
                    pubsub.close()
                except redis.RedisError:
                    pass

    def _subscribe(self, run_id: uuid.UUID):
        try:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            pubsub.subscribe(run_channel(run_id))
            return pubsub
        except (redis.RedisError, OSError, ValueError) as exc:
            log.warning(
                "event stream for run %s tails the table: Redis subscribe failed: %r",
                run_id,
                exc,
                extra={"run_id": str(run_id)},
            )
            return None

    @staticmethod
    def _wait(pubsub, timeout_s: float) -> tuple[bool, object]:
        """Block until a publish wakes us or `timeout_s` passes; drop a broken subscription."""
        if pubsub is None:
            time.sleep(min(FALLBACK_POLL_S, timeout_s))
            return False, None
        try:
            message = pubsub.get_message(timeout=timeout_s)
            woke = message is not None
            while message is not None:  # coalesce a burst into one table read
                message = pubsub.get_message(timeout=0)
            return woke, pubsub
        except (redis.RedisError, OSError) as exc:
            log.warning("event stream lost its Redis subscription, tailing the table: %r", exc)
            try:
                pubsub.close()
            except (redis.RedisError, OSError):
                pass
            return False, None


bp = RunEventsBlueprint("stream", __name__)


@bp.get("/api/runs/<run_id>/events")
@documented(
    query=RunEventsQuery,
    headers=RunEventsHeaders,
    tags=["runs"],
    resp=answers(200, media_type="text/event-stream", errors=(400, 401, 404, 429), also={204: None}),
)
@require_team
def run_events(run_id: str):
    """`text/event-stream` of a run's events; honours `Last-Event-ID` (header or query)."""
    run = team_run(run_id)
    caller = g.caller
    last_id = _last_event_id(request.headers.get("Last-Event-ID") or request.args.get("last_event_id") or "0")
    if run.status in FINAL_RUN_STATUSES and _ended_by(run.id, last_id):
        # The client has seen the end: 204 is how SSE says "do not reconnect".
        return current_app.response_class(status=204)
    db = g.pop("db", None)
    if db is not None:
        db.close()  # an idle stream must not hold a pooled connection

    def generate() -> Iterator[str]:
        yield "retry: 2000\n\n"
        for message in bp.run_messages(run.id, last_id, lambda conn: still_valid(conn, caller)):
            yield message if isinstance(message, str) else str(message)

    response = current_app.response_class(stream_with_context(generate()), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    return response


def _after(last_id: int) -> ColumnElement[bool]:
    """Events after `last_id`, and the run's final event wherever it is: one at or before
    `last_id` means the run ended before the client's position, so the stream ends."""
    return or_(Event.id > last_id, Event.type.in_(FINAL_EVENTS))


def _last_event_id(raw: str) -> int:
    """An event id as a client sends it back: ASCII digits within a bigint (ids are bigints)."""
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19) or int(raw) > MAX_EVENT_ID:
        raise ApiError(
            400, "invalid_last_event_id", f"Last-Event-ID must be an event id: an integer from 0 to {MAX_EVENT_ID}"
        )
    return int(raw)


def _ended_by(run_id: uuid.UUID, last_id: int) -> bool:
    """Whether the run's final event is at or before `last_id` (nothing is left to send)."""
    final = request_session().scalar(
        select(func.min(Event.id)).where(Event.run_id == run_id, Event.type.in_(FINAL_EVENTS))
    )
    return final is not None and final <= last_id

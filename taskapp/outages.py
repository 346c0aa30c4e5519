"""Dependency outages: which errors mean "PostgreSQL or Redis is down for now", and riding them out.

A restart of either is seconds of connection errors. Work that cannot be redone for
free (a Gemini answer already paid for) waits for the database instead of failing;
everything else fails fast and is retried by Celery, the sweeper or the client.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

import kombu.exceptions
import redis
from sqlalchemy import exc as sa_exc

log = logging.getLogger(__name__)
T = TypeVar("T")

DATABASE_ERRORS: tuple[type[Exception], ...] = (sa_exc.OperationalError, sa_exc.InterfaceError)
REDIS_ERRORS: tuple[type[Exception], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    kombu.exceptions.OperationalError,
)
TRANSIENT_ERRORS = DATABASE_ERRORS + REDIS_ERRORS


def is_database_outage(exc: BaseException) -> bool:
    """A lost or refused connection, not a bad statement (a DBAPIError that would fail again)."""
    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
        return True
    return isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated


def dependency_of(exc: BaseException) -> str | None:
    """Which dependency an error says is down ('postgres', 'redis'), or None if it is no outage."""
    if is_database_outage(exc):
        return "postgres"
    if isinstance(exc, REDIS_ERRORS):
        return "redis"
    return None


def retry_database(
    fn: Callable[[], T], *, budget_s: float, what: str, sleep: Callable[[float], None] = time.sleep
) -> T:
    """Run `fn` (one whole transaction) again while PostgreSQL is unreachable, up to `budget_s`.

    For commits that must not be lost: `fn` must be safe to repeat, which a transaction
    that never committed is. Errors that are not an outage are raised at once.
    """
    deadline = time.monotonic() + budget_s
    delay = 0.1
    while True:
        try:
            return fn()
        except sa_exc.DBAPIError as exc:
            if not is_database_outage(exc) or time.monotonic() + delay > deadline:
                raise
            log.warning("%s: database unavailable (%s); retrying in %.1fs", what, type(exc.orig).__name__, delay)
            sleep(delay)
            delay = min(0.5, delay * 2) * random.uniform(0.8, 1.2)

"""A Celery app with one no-op task, on taskapp's broker and config: the raw Celery baseline."""

from __future__ import annotations

import redis
from celery import Celery

app = Celery("bench_noop")
app.config_from_object("celeryconfig")
_counter: redis.Redis | None = None


@app.task(name="bench.noop")
def noop() -> None:
    """Count and return: as little as a task can do and still be observed finishing."""
    global _counter
    if _counter is None:
        _counter = redis.Redis.from_url(app.conf.broker_url)
    _counter.incr("bench:noop:done")

"""Redis connections for hot state and pub/sub: one pool per process and URL."""

from __future__ import annotations

import redis

from taskapp.per_process import per_process


@per_process
def get_redis(url: str) -> redis.Redis:
    """This process's client for `url`."""
    # Each SSE stream holds a pub/sub connection of its own: redis-py 8's default
    # pool cap (100) would push streams past it onto table polling.
    return redis.Redis.from_url(
        url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=30, max_connections=10_000
    )

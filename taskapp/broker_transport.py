"""kombu's Redis transport with one Redis client per channel, not one per command.

kombu builds a new `redis.Redis` for every publish, ack and queue size it does
(`Channel.conn_or_acquire`); building one copies redis-py's table of response callbacks
and more: ~6% of the web's CPU per `POST /api/runs`, ~5% of a worker node's. A client
is only a handle on the channel's connection pool and every command checks out its own
connection, so one client per pool serves every caller (pipelines stay per use).
`celeryconfig` uses it for `redis://` brokers only: for `rediss://` kombu reads TLS from
the URL's scheme, which naming a transport class would bypass.
"""

from __future__ import annotations

import redis
from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    _shared_client: redis.Redis | None = None

    def _create_client(self, asynchronous: bool = False) -> redis.Redis:
        if asynchronous:  # kombu caches these itself (the BRPOP and pub/sub clients)
            return super()._create_client(asynchronous=True)
        pool = self.pool  # replaced after a disconnect: the client goes with it
        client = self._shared_client
        if client is None or client.connection_pool is not pool:
            client = self._shared_client = super()._create_client()
        return client


class Transport(kombu_redis.Transport):
    Channel = Channel

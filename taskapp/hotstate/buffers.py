"""The shared batch buffers: one sorted set per agent and model in Redis.

Every worker on every machine offers to and takes from the same buffers, so steps
from runs started anywhere share a call. Both operations are Lua scripts, so they
are atomic: when several flushers race, each step is taken by exactly one of them.
Scores are Redis's own clock (milliseconds), so machines with skewed clocks agree
on how long a step has waited.

A buffer only holds step ids. The step row in Postgres (status `queued`) is written
before the offer, so a buffer lost with Redis loses nothing the sweeper cannot
find again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import redis

from taskapp.domain.batching import BatchPolicy
from taskapp.hotstate.scripts import load
from taskapp.keys import buffer_key

_OFFER = load("buffer_offer")
_TAKE = load("buffer_take")


@dataclass(frozen=True)
class Taken:
    """A step taken from a buffer, with how long it waited there."""

    step_id: str
    wait_ms: int


class Batcher:
    """Offer step ids to, and take batches from, the shared buffers."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._offer = client.register_script(_OFFER)
        self._take = client.register_script(_TAKE)

    def offer(self, agent: str, model: str, step_ids: list[str]) -> int:
        """Add steps (a step already waiting keeps its place); returns how many now wait."""
        if not step_ids:
            return self.size(agent, model)
        return int(self._offer(keys=[buffer_key(agent, model)], args=list(step_ids)))

    def take(
        self, agent: str, model: str, policy: BatchPolicy, *, force: bool = False, max_batches: int = 16
    ) -> list[Taken]:
        """What is due to flush: full batches now, the rest once the oldest has waited the window."""
        reply = self._take(
            keys=[buffer_key(agent, model)],
            args=[policy.max_size, policy.max_wait_ms, "1" if force else "0", policy.max_size * max_batches],
        )
        now = int(reply[0])
        pairs = reply[1:]
        return [Taken(_text(pairs[i]), max(0, now - int(float(pairs[i + 1])))) for i in range(0, len(pairs), 2)]

    def size(self, agent: str, model: str) -> int:
        return int(cast(int, self.client.zcard(buffer_key(agent, model))))

    def sizes(self, buffers: list[tuple[str, str]]) -> list[int]:
        """How many steps wait in each (agent, model) buffer, in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for agent, model in buffers:
            pipe.zcard(buffer_key(agent, model))
        return [int(n) for n in pipe.execute()]

    def waiting(self, agent: str, model: str, step_ids: list[str]) -> set[str]:
        """Which of these steps are in the buffer now."""
        if not step_ids:
            return set()
        pipe = self.client.pipeline(transaction=False)
        for sid in step_ids:
            pipe.zscore(buffer_key(agent, model), sid)
        return {sid for sid, score in zip(step_ids, pipe.execute(), strict=True) if score is not None}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value

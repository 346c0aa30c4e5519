"""The shared batch buffers: one sorted set per lane and model in Redis.

A lane is an agent version's (taskapp.domain.agents.lane_of): a team's own unless the
agent batches across teams. The lanes with steps waiting are listed, with their batch
policy, in one hash that every flusher reads each tick.

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

import json
from dataclasses import dataclass
from typing import cast

import redis

from taskapp.domain.batching import BatchPolicy
from taskapp.hotstate.scripts import load
from taskapp.keys import LANES_KEY, buffer_key

_OFFER = load("buffer_offer")
_TAKE = load("buffer_take")


@dataclass(frozen=True)
class Taken:
    """A step taken from a buffer, with how long it waited there."""

    step_id: str
    wait_ms: int


@dataclass(frozen=True)
class Lane:
    """One buffer: its lane, model and agent (by name, for logs and batch rows) and its policy."""

    lane: str
    model: str
    agent: str
    policy: BatchPolicy
    opens_runs: bool = False  # its agent takes runs' first steps, so company can always come

    @property
    def field(self) -> str:
        return f"{self.lane}|{self.model}"

    def meta(self) -> str:
        return json.dumps(
            {
                "agent": self.agent,
                "max_size": self.policy.max_size,
                "max_wait_ms": self.policy.max_wait_ms,
                "opens_runs": self.opens_runs,
            }
        )

    @classmethod
    def from_meta(cls, field: str, meta: str) -> Lane:
        lane, model = field.rsplit("|", 1)
        data = json.loads(meta)
        policy = BatchPolicy(int(data["max_size"]), int(data["max_wait_ms"]))
        return cls(lane, model, str(data.get("agent", lane)), policy, bool(data.get("opens_runs")))


class Batcher:
    """Offer step ids to, and take batches from, the shared buffers."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._offer = client.register_script(_OFFER)
        self._take = client.register_script(_TAKE)

    def offer(self, lane: Lane, step_ids: list[str]) -> int:
        """Add steps (a step already waiting keeps its place); returns how many now wait."""
        if not step_ids:
            return self.size(lane.lane, lane.model)
        return int(
            self._offer(keys=[buffer_key(lane.lane, lane.model), LANES_KEY], args=[lane.field, lane.meta(), *step_ids])
        )

    def lanes(self) -> list[Lane]:
        """The lanes with steps waiting (or just emptied), in a stable order."""
        raw = cast(dict, self.client.hgetall(LANES_KEY))
        return sorted((Lane.from_meta(_text(k), _text(v)) for k, v in raw.items()), key=lambda lane: lane.field)

    def take(self, lane: Lane, *, force: bool = False, max_batches: int = 16) -> list[Taken]:
        """What is due to flush: full batches now, the rest once the oldest has waited the window."""
        policy = lane.policy
        reply = self._take(
            keys=[buffer_key(lane.lane, lane.model), LANES_KEY],
            args=[
                policy.max_size,
                policy.max_wait_ms,
                "1" if force else "0",
                policy.max_size * max_batches,
                lane.field,
            ],
        )
        now = int(reply[0])
        pairs = reply[1:]
        return [Taken(_text(pairs[i]), max(0, now - int(float(pairs[i + 1])))) for i in range(0, len(pairs), 2)]

    def size(self, agent: str, model: str) -> int:
        return int(cast(int, self.client.zcard(buffer_key(agent, model))))

    def sizes(self, buffers: list[tuple[str, str]]) -> list[int]:
        """How many steps wait in each (lane, model) buffer, in one round trip."""
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

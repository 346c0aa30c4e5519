"""Batching policy: how long a step may wait for company, and how many share one call.

Plain data and arithmetic (no Redis, no Celery): the buffer in `taskapp.batcher`
applies these numbers atomically, and the flusher cuts what it takes into batches.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class BatchPolicy:
    """Flush when `max_size` steps wait, or when the oldest has waited `max_wait_ms`."""

    max_size: int
    max_wait_ms: int

    def __post_init__(self) -> None:
        if self.max_size < 1:
            raise ValueError("max_size must be at least 1")
        if self.max_wait_ms < 0:
            raise ValueError("max_wait_ms must not be negative")


def policy_for(agent: str, default: BatchPolicy, overrides: Mapping[str, Mapping[str, Any]]) -> BatchPolicy:
    """The agent's own policy where configured (BATCH_POLICIES), else the default."""
    own = overrides.get(agent) or {}
    return BatchPolicy(max_size=int(own.get("max_size", default.max_size)),
                       max_wait_ms=int(own.get("max_wait_ms", default.max_wait_ms)))


def chunks(items: Sequence[T], size: int) -> list[list[T]]:
    """Items cut into batches of at most `size`, oldest first (the order they were taken in)."""
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


@dataclass(frozen=True)
class WaitStats:
    mean_ms: int
    max_ms: int


def wait_stats(waits_ms: Sequence[int]) -> WaitStats:
    if not waits_ms:
        return WaitStats(0, 0)
    return WaitStats(round(sum(waits_ms) / len(waits_ms)), max(waits_ms))

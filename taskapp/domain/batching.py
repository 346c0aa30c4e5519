"""Batching policy: how long a step may wait for company, and how many share one call.

Plain data and arithmetic (no Redis, no Celery): the buffer in `taskapp.hotstate.buffers`
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
    return BatchPolicy(
        max_size=int(own.get("max_size", default.max_size)),
        max_wait_ms=int(own.get("max_wait_ms", default.max_wait_ms)),
    )


def chunks(items: Sequence[T], size: int) -> list[list[T]]:
    """Items cut into batches of at most `size`, oldest first (the order they were taken in)."""
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


@dataclass(frozen=True)
class WaitStats:
    mean_ms: int
    max_ms: int


def wait_stats(waits_ms: Sequence[int]) -> WaitStats:
    if not waits_ms:
        return WaitStats(0, 0)
    return WaitStats(round(sum(waits_ms) / len(waits_ms)), max(waits_ms))


@dataclass(frozen=True)
class Outlook:
    """What could still bring a waiting step company, as the source of truth sees it now."""

    runs_to_start: bool  # queued runs: their first steps are on their way
    batches_in_flight: bool  # their runs' next steps follow the aggregator's decision
    runs_between_steps: bool  # running runs with nothing queued: a decision is on its way
    steps_unbuffered: bool  # committed as queued but not (yet) in a buffer

    @property
    def anything_on_its_way(self) -> bool:
        return self.runs_to_start or self.batches_in_flight or self.runs_between_steps or self.steps_unbuffered


def company_can_come(outlook: Outlook, *, first_step_agent: bool) -> bool:
    """Whether waiting out the window could still give a buffer's steps company.

    A run submitted from now on puts its first step in a buffer at once, so an agent
    that takes runs' first steps always waits its window. Any other agent's company
    comes from runs already moving: a new run's later steps are at least its first
    step's window away. When nothing is on its way, waiting buys nothing and the buffer
    flushes at once ("idle"): a lone batch run waits one window, not one per stage, and
    a job's last steps no longer wait out a window per stage in turn.
    """
    return first_step_agent or outlook.anything_on_its_way

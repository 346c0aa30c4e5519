"""Retrying: whether a failed call waits, retries or fails, and the delays (exponential with full
jitter, so a fleet that failed together retries apart)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

# The longest a retry waits (before jitter): the broker's visibility timeout must exceed it.
BACKOFF_CAP_S = 60.0
JITTER_SPREAD = 0.2


def backoff_s(
    attempt: int, base_s: float = 1.0, cap_s: float = BACKOFF_CAP_S, rng: random.Random | None = None
) -> float:
    """Delay before retry number `attempt` (0-based): uniform in [base, min(cap, base * 2**attempt)]."""
    high = min(cap_s, base_s * (2 ** max(0, attempt)))
    return (rng or random).uniform(base_s, max(base_s, high))


def jittered(delay_s: float, spread: float = JITTER_SPREAD, rng: random.Random | None = None) -> float:
    """A server-given delay, nudged up by up to `spread` so waiters do not wake at once."""
    return delay_s * (1 + (rng or random).uniform(0, spread))


@dataclass(frozen=True)
class AfterError:
    """What a batch does after its Gemini call failed: wait for quota, retry later, or fail its steps."""

    action: Literal["wait", "retry", "fail"]
    delay_s: float = 0.0


def after_call_error(
    *, quota_delay_s: float | None, retryable: bool, retry_after_s: float | None, give_up: bool, default_delay_s: float
) -> AfterError:
    """The choice, from the error alone: a quota refusal waits (never a failure), a transient error
    is retried after Gemini's delay (or ours) until the task gives up, anything else fails."""
    if quota_delay_s is not None:
        return AfterError("wait", quota_delay_s)
    if retryable and not give_up:
        return AfterError("retry", retry_after_s or default_delay_s)
    return AfterError("fail")

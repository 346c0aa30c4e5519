"""Gemini quotas as configuration, and the calendar they live on.

Gemini counts requests per minute (RPM), input tokens per minute (TPM) and requests
per day (RPD) per project and model; the day resets at midnight US Pacific. These
numbers differ by account tier, so they are configuration (GEMINI_QUOTAS), with
defaults from Gemini's published paid tier 1 limits (docs/configuration.md). Plain data and arithmetic: the
gate in `taskapp.hotstate.quota_gate` applies them atomically in Redis.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

PACIFIC = ZoneInfo("America/Los_Angeles")


@dataclass(frozen=True)
class ModelQuota:
    """Limits for one model; None means Gemini sets none on that dimension."""

    rpm: int | None
    tpm: int | None
    rpd: int | None
    concurrency: int = 32

    def __post_init__(self) -> None:
        for name in ("rpm", "tpm", "rpd"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 (or null for no limit)")
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")


# Tier 1 as Google published it (illustrative; set GEMINI_QUOTAS to your project's numbers).
DEFAULT_QUOTAS: dict[str, ModelQuota] = {
    "gemini-2.5-pro": ModelQuota(rpm=150, tpm=2_000_000, rpd=10_000),
    "gemini-2.5-flash": ModelQuota(rpm=1_000, tpm=1_000_000, rpd=10_000),
    "gemini-2.5-flash-lite": ModelQuota(rpm=4_000, tpm=4_000_000, rpd=None),
    "gemini-2.0-flash": ModelQuota(rpm=2_000, tpm=4_000_000, rpd=None),
}
FALLBACK_QUOTA = ModelQuota(rpm=60, tpm=250_000, rpd=1_000, concurrency=8)
QUOTA_FIELDS = ("rpm", "tpm", "rpd", "concurrency")


def quota_for(model: str, overrides: Mapping[str, Mapping[str, Any]]) -> ModelQuota:
    """The model's configured limits: its GEMINI_QUOTAS entry over the defaults."""
    base = DEFAULT_QUOTAS.get(model, FALLBACK_QUOTA)
    own = overrides.get(model) or overrides.get("*") or {}
    return replace(base, **{k: own[k] for k in QUOTA_FIELDS if k in own})


@dataclass(frozen=True)
class QuotaDay:
    """Which quota day a moment falls in, and when that day ends (epoch ms)."""

    key: str
    resets_at_ms: int


def quota_day(now: datetime, day_seconds: int | None = None) -> QuotaDay:
    """Gemini's day: midnight to midnight US Pacific.

    `day_seconds` shortens the day (simulation and tests only: a day of that length
    counted from the epoch), so a test can see a model parked and released.
    """
    if day_seconds:
        index = math.floor(now.timestamp() / day_seconds)
        return QuotaDay(f"sim{day_seconds}-{index}", int((index + 1) * day_seconds * 1000))
    local = now.astimezone(PACIFIC)
    midnight = datetime(local.year, local.month, local.day, tzinfo=PACIFIC) + timedelta(days=1)
    # Build the next midnight in local time, so a DST change day is 23 or 25 hours long.
    midnight = midnight.replace(hour=0, minute=0, second=0, microsecond=0)
    return QuotaDay(local.date().isoformat(), int(midnight.timestamp() * 1000))


def pacific_day_start(now: datetime) -> datetime:
    """Midnight US Pacific that began `now`'s quota day (where team budgets start counting)."""
    local = now.astimezone(PACIFIC)
    return datetime(local.year, local.month, local.day, tzinfo=PACIFIC)


@dataclass(frozen=True)
class TeamShare:
    """A team's own share of the project's quota, on top of the model limits."""

    max_concurrent_runs: int | None = None
    daily_token_budget: int | None = None

    def may_start_run(self, running: int) -> bool:
        return self.max_concurrent_runs is None or running < self.max_concurrent_runs

    def budget_exhausted(self, tokens_today: int) -> str | None:
        """Why a run of this team may not make more calls today, or None."""
        if self.daily_token_budget is not None and tokens_today >= self.daily_token_budget:
            return (
                f"team_daily_token_budget_exhausted: {tokens_today} tokens used today "
                f"(budget {self.daily_token_budget}, resets at midnight US Pacific)"
            )
        return None

"""Quota arithmetic: per-model quotas, the quota day (midnight Pacific) and a team's share."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from taskapp.domain.quota import ModelQuota, TeamShare, quota_day, quota_for


def test_quotas_fall_back_per_model_and_the_quota_day_ends_at_midnight_pacific():
    assert quota_for("gemini-2.5-flash", {}).rpm == 1_000
    assert quota_for("gemini-2.5-flash", {"gemini-2.5-flash": {"rpm": 10}}).rpm == 10
    assert quota_for("unknown-model", {"*": {"rpd": 5}}).rpd == 5
    # 07:59 UTC on 23 Nov is still the 22nd in California; the day ends at 08:00 UTC.
    day = quota_day(datetime(2026, 11, 23, 7, 59, tzinfo=UTC))
    assert day.key == "2026-11-22" and day.resets_at_ms == int(datetime(2026, 11, 23, 8, tzinfo=UTC).timestamp() * 1000)
    # Summer time: midnight Pacific is 07:00 UTC.
    summer = quota_day(datetime(2026, 7, 1, 12, tzinfo=UTC))
    assert summer.resets_at_ms == int(datetime(2026, 7, 2, 7, tzinfo=UTC).timestamp() * 1000)
    with pytest.raises(ValueError):
        ModelQuota(rpm=0, tpm=None, rpd=None)


def test_a_team_share_caps_concurrent_runs_and_daily_tokens():
    assert TeamShare().may_start_run(1000) and TeamShare().budget_exhausted(10**9) is None
    assert TeamShare(max_concurrent_runs=2).may_start_run(1)
    assert not TeamShare(max_concurrent_runs=2).may_start_run(2)
    assert "budget 100" in TeamShare(daily_token_budget=100).budget_exhausted(100)

"""The quota gate on real Redis: every dimension, fairness, leases, pauses and the breaker.

Each test uses a model name of its own, so nothing else (the session's workers) shares
its counters.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime

import pytest
import redis

from taskapp.domain.quota import ModelQuota, quota_day
from taskapp.hotstate.quota_gate import BREAKER_THRESHOLD, QuotaGate


@pytest.fixture()
def model() -> str:
    return f"test-model-{uuid.uuid4().hex[:8]}"


def _gate(stack, model: str, quota: ModelQuota, **kw) -> QuotaGate:
    return QuotaGate(redis.Redis.from_url(stack.redis_url), {model: quota}, lease_ms=kw.pop("lease_ms", 60_000), **kw)


def test_rpm_is_a_sliding_window_and_says_how_long_to_wait(stack, model):
    gate = _gate(stack, model, ModelQuota(rpm=5, tpm=None, rpd=None))
    grants = [gate.acquire(model, f"t{i}", 10) for i in range(5)]
    assert all(g.granted for g in grants)
    refused = gate.acquire(model, "t5", 10)
    assert not refused.granted and refused.reason == "rpm"
    assert 59_000 < refused.wait_ms <= 61_001  # until the oldest leaves the (60 s + margin) window
    assert gate.usage(model)["rpm"] == {"used": 5, "limit": 5}


def test_waiters_are_served_first_come_first_served(stack, model):
    gate = _gate(stack, model, ModelQuota(rpm=2, tpm=None, rpd=None))
    assert gate.acquire(model, "a", 1).granted
    time.sleep(0.01)  # the two slots free up 10 ms apart
    first = gate.acquire(model, "first", 1)
    assert first.granted  # capacity left
    early = gate.acquire(model, "early", 1)
    late = gate.acquire(model, "late", 1)
    assert not early.granted and not late.granted
    assert late.ahead == 1 and late.wait_ms > early.wait_ms  # the later waiter waits for a later slot
    # The early waiter keeps its place when it asks again.
    again = gate.acquire(model, "early", 1)
    assert again.ahead == 0


def test_tpm_binds_on_large_prompts_and_is_reconciled_after_the_call(stack, model):
    gate = _gate(stack, model, ModelQuota(rpm=None, tpm=1_000, rpd=None))
    big = gate.acquire(model, "big", 700)
    assert big.granted
    refused = gate.acquire(model, "next", 400)
    assert not refused.granted and refused.reason == "tpm"
    gate.finish(big, tokens_in=500, outcome="ok")  # the real usage was smaller than the estimate
    assert gate.usage(model)["tpm"]["used"] == 500
    assert gate.acquire(model, "next", 400).granted
    assert gate.acquire(model, "huge", 1_001).impossible  # can never fit: said so, not waited on


def test_rpd_parks_the_model_until_the_day_resets(stack, model):
    gate = _gate(stack, model, ModelQuota(rpm=None, tpm=None, rpd=2), day_seconds=3)
    # Start at the beginning of a (3 s) day so the test does not straddle a reset.
    time.sleep(3 - (time.time() % 3) + 0.05)
    assert gate.acquire(model, "a", 1).granted and gate.acquire(model, "b", 1).granted
    parked = gate.acquire(model, "c", 1)
    assert not parked.granted and parked.reason == "rpd" and parked.wait_ms <= 3_000
    time.sleep(parked.wait_ms / 1000 + 0.1)
    assert gate.acquire(model, "c", 1).granted


def test_a_slot_held_by_a_killed_worker_expires(stack, model):
    """A process takes the only concurrency slot and is SIGKILLed holding it."""
    quota = ModelQuota(rpm=None, tpm=None, rpd=None, concurrency=1)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"""
import redis, time
from taskapp.domain.quota import ModelQuota
from taskapp.hotstate.quota_gate import QuotaGate
gate = QuotaGate(redis.Redis.from_url({stack.redis_url!r}), {{{model!r}: ModelQuota(None, None, None, 1)}},
                 lease_ms=1500)
assert gate.acquire({model!r}, "holder", 1).granted
print("held", flush=True)
time.sleep(60)
""",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        holder.kill()
        holder.wait()
        gate = _gate(stack, model, quota)
        blocked = gate.acquire(model, "next", 1)
        assert not blocked.granted and blocked.reason == "concurrency"
        deadline = time.monotonic() + 5
        while not gate.acquire(model, "next", 1).granted:
            assert time.monotonic() < deadline, "the dead worker's slot never came back"
            time.sleep(0.1)
    finally:
        holder.kill()


def test_a_429_pauses_the_fleet_for_that_model(stack, model):
    gate = _gate(stack, model, ModelQuota(rpm=100, tpm=None, rpd=None))
    gate.pause(model, seconds=2)
    other = _gate(stack, model, ModelQuota(rpm=100, tpm=None, rpd=None))  # another worker
    refused = other.acquire(model, "t", 1)
    assert not refused.granted and refused.reason == "paused_after_429" and 1_500 < refused.wait_ms <= 2_000
    assert gate.usage(model)["paused_until"] is not None


def test_the_circuit_opens_after_consecutive_failures_then_half_opens(stack, model, monkeypatch):
    import taskapp.hotstate.quota_gate as qg

    monkeypatch.setattr(qg, "BREAKER_COOLDOWN_MS", 500)
    gate = _gate(stack, model, ModelQuota(rpm=None, tpm=None, rpd=None))
    for i in range(BREAKER_THRESHOLD):
        grant = gate.acquire(model, f"t{i}", 1)
        assert grant.granted
        gate.finish(grant, tokens_in=None, outcome="failed")
    refused = gate.acquire(model, "x", 1)
    assert not refused.granted and refused.reason == "circuit_open"
    assert gate.usage(model)["circuit"] == "open"
    time.sleep(0.6)
    probe = gate.acquire(model, "probe", 1)
    assert probe.granted  # half open: one probe at a time
    assert gate.acquire(model, "another", 1).reason == "circuit_half_open"
    gate.finish(probe, tokens_in=1, outcome="ok")
    assert gate.acquire(model, "another", 1).granted and gate.usage(model)["circuit"] == "closed"


def test_a_per_day_429_parks_the_model_until_the_reset(stack, model):
    gate = _gate(stack, model, ModelQuota(rpm=None, tpm=None, rpd=None), day_seconds=30)
    until = gate.pause(model, until_day_reset=True)
    assert until == quota_day(datetime.now(UTC), 30).resets_at_ms
    parked = gate.acquire(model, "t", 1)
    assert not parked.granted and parked.reason == "paused_after_429"
    assert abs(parked.wait_ms - (until - time.time() * 1000)) < 1_000

"""The cluster-wide quota gate: one atomic acquisition in Redis before every Gemini call.

Every worker process on every machine asks the same keys, so the fleet as a whole
stays within each model's RPM, TPM, RPD and concurrency, whatever its size. One Lua
script checks every dimension at once and either grants (recording the request) or
answers how long to wait:

- RPM and TPM: a sliding log of the last 60 s (plus a margin for the time a request
  takes to reach Gemini), not fixed windows that admit twice the limit at a boundary;
- RPD: a counter per quota day (midnight US Pacific);
- concurrency: leases that expire on their own if a worker dies holding one;
- first come, first served: a waiter is granted only when the waiters that arrived
  before it fit too, and its wait is computed from its place in the line;
- a fleet-wide pause after Gemini answered 429 anyway (another client of the same
  project), until its retryDelay or, for a per-day quota, the day's reset;
- a circuit breaker: 5 consecutive failures open it for a cool-down, then one probe.

Tokens are reserved from an estimate and reconciled with the real usage afterwards.
Redis's clock is the only clock, so machines with skewed clocks agree.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

import redis

from taskapp.domain.quota import ModelQuota, quota_day
from taskapp.hotstate.scripts import load
from taskapp.keys import QUOTA_PREFIX
from taskapp.outages import REDIS_ERRORS
from taskapp.settings import Settings

log = logging.getLogger(__name__)

MINUTE_S = 60  # the RPM/TPM window; QUOTA_MINUTE_SECONDS shortens it for simulations
WINDOW_MARGIN_MS = 1_000  # a granted request reaches Gemini a little later than it was granted
WAITER_TTL_MS = 15 * 60 * 1000
BREAKER_THRESHOLD = 5
BREAKER_COOLDOWN_MS = 30_000
CONCURRENCY_POLL_MS = 250

_ACQUIRE = load("quota_acquire")
_FINISH = load("quota_finish")
_PAUSE = load("quota_pause")


@dataclass(frozen=True)
class Grant:
    """The gate's answer: granted, or wait `wait_ms` (and why)."""

    model: str
    grant_id: str
    tokens: int
    granted: bool
    wait_ms: int = 0
    reason: str = ""
    ahead: int = 0

    @property
    def impossible(self) -> bool:
        return self.reason == "request_larger_than_tpm"


def gate_for(settings: Settings, lease_ms: int) -> QuotaGate:
    """This process's gate, over every model the deployment serves (GEMINI_MODELS)."""
    from taskapp.hotstate.client import get_redis

    return QuotaGate(
        get_redis(settings.require("redis_url")),
        {m: settings.quota(m) for m in settings.gemini_models},
        lease_ms=lease_ms,
        day_seconds=settings.quota_day_seconds,
        minute_seconds=settings.quota_minute_seconds,
    )


class QuotaGate:
    def __init__(
        self,
        client: redis.Redis,
        quotas: dict[str, ModelQuota],
        *,
        lease_ms: int,
        day_seconds: int | None = None,
        minute_seconds: int = MINUTE_S,
    ) -> None:
        self.client = client
        self.quotas = quotas
        self.lease_ms = lease_ms
        self.day_seconds = day_seconds
        self.window_ms = minute_seconds * 1000
        self._acquire = client.register_script(_ACQUIRE)
        self._finish = client.register_script(_FINISH)
        self._pause = client.register_script(_PAUSE)

    def _keys(self, model: str, day: str) -> dict[str, str]:
        base = f"{QUOTA_PREFIX}:{model}"
        return {
            "req": f"{base}:req",
            "tok": f"{base}:tok",
            "toksum": f"{base}:toksum",
            "day": f"{base}:day:{day}",
            "leases": f"{base}:leases",
            "waiters": f"{base}:waiters",
            "pause": f"{base}:pause",
            "breaker": f"{base}:breaker",
            "probe": f"{base}:probe",
        }

    def quota(self, model: str) -> ModelQuota:
        return self.quotas[model]

    def acquire(self, model: str, ticket: str, tokens: int) -> Grant:
        """Ask for one request of `tokens` input tokens; `ticket` keeps the caller's place in line."""
        q = self.quota(model)
        day = quota_day(datetime.now(UTC), self.day_seconds)
        k = self._keys(model, day.key)
        grant_id = uuid.uuid4().hex
        reply = self._acquire(
            keys=[
                k["req"],
                k["tok"],
                k["toksum"],
                k["day"],
                k["leases"],
                k["waiters"],
                k["pause"],
                k["breaker"],
                k["probe"],
            ],
            args=[
                ticket,
                grant_id,
                tokens,
                _lim(q.rpm),
                _lim(q.tpm),
                _lim(q.rpd),
                q.concurrency,
                self.window_ms + WINDOW_MARGIN_MS,
                day.resets_at_ms,
                self.lease_ms,
                WAITER_TTL_MS,
                BREAKER_THRESHOLD,
                CONCURRENCY_POLL_MS,
            ],
        )
        status, wait_ms, reason, ahead = int(reply[0]), int(reply[1]), _text(reply[2]), int(reply[3])
        return Grant(model, grant_id, tokens, status == 1, wait_ms, reason if status != 1 else "", ahead)

    def finish(self, grant: Grant, *, tokens_in: int | None, outcome: str) -> None:
        """After the call: `ok`, `failed` (5xx/timeout: feeds the breaker), `other`, or `unused`.

        Redis being unreachable here must not cost the answer already paid for: the
        reservation stands as estimated and the concurrency lease expires on its own.
        """
        day = quota_day(datetime.now(UTC), self.day_seconds)
        k = self._keys(grant.model, day.key)
        try:
            self._finish(
                keys=[k["tok"], k["toksum"], k["leases"], k["breaker"], k["probe"], k["req"], k["day"]],
                args=[
                    grant.grant_id,
                    grant.tokens,
                    grant.tokens if tokens_in is None else tokens_in,
                    outcome,
                    BREAKER_THRESHOLD,
                    BREAKER_COOLDOWN_MS,
                ],
            )
        except REDIS_ERRORS as exc:
            log.warning(
                "quota gate: could not record the end of a %s call (%s); its lease will expire", grant.model, exc
            )

    def pause(self, model: str, *, seconds: float | None = None, until_day_reset: bool = False) -> int:
        """Hold every worker back from a model: Gemini said 429 (per minute: its retryDelay;
        per day: until the reset). Returns when the pause ends (epoch ms)."""
        day = quota_day(datetime.now(UTC), self.day_seconds)
        k = self._keys(model, day.key)
        return int(
            self._pause(
                keys=[k["pause"]], args=[int((seconds or 1) * 1000), str(day.resets_at_ms) if until_day_reset else ""]
            )
        )

    def usage(self, model: str) -> dict[str, object]:
        """Used against limit per dimension, for /api/metrics and the dashboard."""
        q = self.quota(model)
        day = quota_day(datetime.now(UTC), self.day_seconds)
        k = self._keys(model, day.key)
        now_ms = int(cast(tuple[int, int], self.client.time())[0]) * 1000
        pipe = self.client.pipeline(transaction=False)
        pipe.zcount(k["req"], now_ms - self.window_ms, "+inf")
        pipe.get(k["toksum"])
        pipe.get(k["day"])
        pipe.zcount(k["leases"], now_ms, "+inf")
        pipe.zcard(k["waiters"])
        pipe.get(k["pause"])
        pipe.hgetall(k["breaker"])
        rpm, tpm, rpd, leases, waiters, pause, breaker = pipe.execute()
        open_until = int(breaker.get(b"open_until", 0) or 0)
        return {
            "rpm": {"used": rpm, "limit": q.rpm},
            "tpm": {"used": int(tpm or 0), "limit": q.tpm},
            "rpd": {"used": int(rpd or 0), "limit": q.rpd, "resets_at": _iso(day.resets_at_ms)},
            "concurrency": {"used": leases, "limit": q.concurrency},
            "waiting": waiters,
            "paused_until": _iso(int(pause)) if pause and int(pause) > now_ms else None,
            "circuit": "open"
            if open_until > now_ms
            else ("half_open" if int(breaker.get(b"fails", 0) or 0) >= BREAKER_THRESHOLD else "closed"),
        }


def _lim(value: int | None) -> int:
    return -1 if value is None else value


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()

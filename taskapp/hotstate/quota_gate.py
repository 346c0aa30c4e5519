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

import redis

from taskapp.domain.quota import ModelQuota, quota_day
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

_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ticket, grant, tokens = ARGV[1], ARGV[2], tonumber(ARGV[3])
local rpm, tpm, rpd, conc = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local window, day_reset, lease_ms = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local waiter_ttl, threshold, conc_poll = tonumber(ARGV[11]), tonumber(ARGV[12]), tonumber(ARGV[13])
local REQ, TOK, TOKSUM, DAY, LEASES, WAITERS, PAUSE, BREAKER, PROBE =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]

redis.call('ZREMRANGEBYSCORE', REQ, '-inf', now - window)
local old = redis.call('ZRANGEBYSCORE', TOK, '-inf', now - window)
if #old > 0 then
  local freed = 0
  for i = 1, #old do freed = freed + tonumber(string.match(old[i], '|(%d+)$')) end
  redis.call('ZREMRANGEBYSCORE', TOK, '-inf', now - window)
  redis.call('DECRBY', TOKSUM, freed)
end
redis.call('ZREMRANGEBYSCORE', LEASES, '-inf', now)
-- Waiters are scored by arrival in microseconds-ish: ms * 1000 + a counter, so two
-- arrivals in the same millisecond still have an order.
redis.call('ZREMRANGEBYSCORE', WAITERS, '-inf', (now - waiter_ttl) * 1000)
local mine = now * 1000 + redis.call('INCR', WAITERS .. ':seq') % 1000

local wait, why = 0, ''
local function need(ms, reason) if ms > wait then wait = ms; why = reason end end

local paused = tonumber(redis.call('GET', PAUSE) or '0')
if paused > now then need(paused - now, 'paused_after_429') end
local open_until = tonumber(redis.call('HGET', BREAKER, 'open_until') or '0')
if open_until > now then need(open_until - now, 'circuit_open') end

local arrival = tonumber(redis.call('ZSCORE', WAITERS, ticket) or mine)
local ahead = redis.call('ZCOUNT', WAITERS, '-inf', '(' .. string.format('%d', arrival))
local n = redis.call('ZCARD', REQ)
if rpm >= 0 then
  -- First come, first served: I need a slot for everyone ahead of me and one for me.
  local short = ahead + 1 - (rpm - n)
  if short > 0 then
    if short <= n then
      local at = redis.call('ZRANGE', REQ, short - 1, short - 1, 'WITHSCORES')
      need(tonumber(at[2]) + window - now + 1, 'rpm')
    else
      need(window, 'rpm')
    end
  end
end
if tpm >= 0 then
  if tokens > tpm then return {-1, 0, 'request_larger_than_tpm', 0} end
  local used = tonumber(redis.call('GET', TOKSUM) or '0')
  if used + tokens > tpm then
    local entries = redis.call('ZRANGE', TOK, 0, -1, 'WITHSCORES')
    local freed = 0
    for i = 1, #entries, 2 do
      freed = freed + tonumber(string.match(entries[i], '|(%d+)$'))
      if used - freed + tokens <= tpm then
        need(tonumber(entries[i + 1]) + window - now + 1, 'tpm')
        break
      end
    end
  end
end
if rpd >= 0 then
  local today = tonumber(redis.call('GET', DAY) or '0')
  if today >= rpd then need(day_reset - now, 'rpd') end
end
if conc >= 0 and redis.call('ZCARD', LEASES) >= conc then need(conc_poll, 'concurrency') end
if wait == 0 and tonumber(redis.call('HGET', BREAKER, 'fails') or '0') >= threshold then
  -- Half open: one probe call at a time decides whether the breaker closes.
  if not redis.call('SET', PROBE, grant, 'NX', 'PX', lease_ms) then need(1000, 'circuit_half_open') end
end
if wait > 0 then
  redis.call('ZADD', WAITERS, 'NX', mine, ticket)
  return {0, wait, why, ahead}
end
redis.call('ZADD', REQ, now, grant)
redis.call('ZADD', TOK, now, grant .. '|' .. tokens)
redis.call('INCRBY', TOKSUM, tokens)
redis.call('INCR', DAY)
redis.call('PEXPIREAT', DAY, day_reset + 86400000)
redis.call('ZADD', LEASES, now + lease_ms, grant)
redis.call('ZREM', WAITERS, ticket)
return {1, 0, '', ahead}
"""

# Reconcile the reserved tokens with the real usage, release the lease, feed the breaker.
_FINISH = """
local grant, estimate, actual, outcome = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local threshold, cooldown = tonumber(ARGV[5]), tonumber(ARGV[6])
local TOK, TOKSUM, LEASES, BREAKER, PROBE, REQ, DAY = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
redis.call('ZREM', LEASES, grant)
if outcome == 'unused' then
  if redis.call('ZREM', REQ, grant) == 1 then redis.call('DECR', DAY) end
  actual = 0
end
local member = grant .. '|' .. estimate
local score = redis.call('ZSCORE', TOK, member)
if score then
  redis.call('ZREM', TOK, member)
  if actual > 0 then redis.call('ZADD', TOK, score, grant .. '|' .. actual) end
  redis.call('INCRBY', TOKSUM, actual - tonumber(estimate))
end
if redis.call('GET', PROBE) == grant then redis.call('DEL', PROBE) end
if outcome == 'ok' then
  redis.call('DEL', BREAKER)
elseif outcome == 'failed' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local fails = redis.call('HINCRBY', BREAKER, 'fails', 1)
  if fails >= threshold then redis.call('HSET', BREAKER, 'open_until', now + cooldown) end
end
return 1
"""

_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local untl = now + tonumber(ARGV[1])
if ARGV[2] ~= '' then untl = tonumber(ARGV[2]) end
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if untl > current then redis.call('SET', KEYS[1], untl, 'PX', math.max(1, untl - now)) end
return untl
"""


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
    """This process's gate, over every model an agent calls."""
    from taskapp.domain.agents import models_in_use
    from taskapp.hotstate.client import get_redis

    return QuotaGate(get_redis(settings.require("redis_url")), {m: settings.quota(m) for m in models_in_use()},
                     lease_ms=lease_ms, day_seconds=settings.quota_day_seconds,
                     minute_seconds=settings.quota_minute_seconds)


class QuotaGate:
    def __init__(self, client: redis.Redis, quotas: dict[str, ModelQuota], *, lease_ms: int,
                 day_seconds: int | None = None, minute_seconds: int = MINUTE_S) -> None:
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
        return {"req": f"{base}:req", "tok": f"{base}:tok", "toksum": f"{base}:toksum", "day": f"{base}:day:{day}",
                "leases": f"{base}:leases", "waiters": f"{base}:waiters", "pause": f"{base}:pause",
                "breaker": f"{base}:breaker", "probe": f"{base}:probe"}

    def quota(self, model: str) -> ModelQuota:
        return self.quotas[model]

    def acquire(self, model: str, ticket: str, tokens: int) -> Grant:
        """Ask for one request of `tokens` input tokens; `ticket` keeps the caller's place in line."""
        q = self.quota(model)
        day = quota_day(datetime.now(UTC), self.day_seconds)
        k = self._keys(model, day.key)
        grant_id = uuid.uuid4().hex
        reply = self._acquire(
            keys=[k["req"], k["tok"], k["toksum"], k["day"], k["leases"], k["waiters"], k["pause"], k["breaker"],
                  k["probe"]],
            args=[ticket, grant_id, tokens, _lim(q.rpm), _lim(q.tpm), _lim(q.rpd), q.concurrency,
                  self.window_ms + WINDOW_MARGIN_MS, day.resets_at_ms, self.lease_ms, WAITER_TTL_MS,
                  BREAKER_THRESHOLD, CONCURRENCY_POLL_MS])
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
            self._finish(keys=[k["tok"], k["toksum"], k["leases"], k["breaker"], k["probe"], k["req"], k["day"]],
                         args=[grant.grant_id, grant.tokens, grant.tokens if tokens_in is None else tokens_in,
                               outcome, BREAKER_THRESHOLD, BREAKER_COOLDOWN_MS])
        except REDIS_ERRORS as exc:
            log.warning("quota gate: could not record the end of a %s call (%s); its lease will expire",
                        grant.model, exc)

    def pause(self, model: str, *, seconds: float | None = None, until_day_reset: bool = False) -> int:
        """Hold every worker back from a model: Gemini said 429 (per minute: its retryDelay;
        per day: until the reset). Returns when the pause ends (epoch ms)."""
        day = quota_day(datetime.now(UTC), self.day_seconds)
        k = self._keys(model, day.key)
        return int(self._pause(keys=[k["pause"]], args=[int((seconds or 1) * 1000),
                                                        str(day.resets_at_ms) if until_day_reset else ""]))

    def usage(self, model: str) -> dict[str, object]:
        """Used against limit per dimension, for /api/metrics and the dashboard."""
        q = self.quota(model)
        day = quota_day(datetime.now(UTC), self.day_seconds)
        k = self._keys(model, day.key)
        now_ms = int(self.client.time()[0]) * 1000
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
            "rpm": {"used": rpm, "limit": q.rpm}, "tpm": {"used": int(tpm or 0), "limit": q.tpm},
            "rpd": {"used": int(rpd or 0), "limit": q.rpd, "resets_at": _iso(day.resets_at_ms)},
            "concurrency": {"used": leases, "limit": q.concurrency}, "waiting": waiters,
            "paused_until": _iso(int(pause)) if pause and int(pause) > now_ms else None,
            "circuit": "open" if open_until > now_ms else (
                "half_open" if int(breaker.get(b"fails", 0) or 0) >= BREAKER_THRESHOLD else "closed"),
        }



def _lim(value: int | None) -> int:
    return -1 if value is None else value


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()

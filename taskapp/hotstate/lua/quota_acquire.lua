-- Grant one Gemini call of a model, or say how long to wait, checking every quota at once.
-- KEYS[1]: requests in the window (zset)   KEYS[2]: input tokens in the window (zset "grant|tokens")
-- KEYS[3]: the window's token sum          KEYS[4]: requests today (counter)
-- KEYS[5]: leases of calls in flight       KEYS[6]: waiters, in arrival order
-- KEYS[7]: pause until (ms, after a 429)   KEYS[8]: circuit breaker (hash)   KEYS[9]: half-open probe
-- ARGV[1]: ticket   ARGV[2]: grant id   ARGV[3]: estimated input tokens
-- ARGV[4..7]: rpm, tpm, rpd, concurrency (-1: no limit)
-- ARGV[8]: window_ms   ARGV[9]: day reset (ms)   ARGV[10]: lease_ms
-- ARGV[11]: waiter ttl (ms)   ARGV[12]: breaker threshold   ARGV[13]: concurrency poll (ms)
-- Returns: {1, 0, '', ahead} granted; {0, wait_ms, reason, ahead} wait;
--          {-1, 0, reason, 0} never (a request larger than the TPM limit).
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

-- A call is over: reconcile its reserved tokens with the real usage, release its lease,
-- feed the circuit breaker.
-- KEYS[1]: tokens in the window   KEYS[2]: the window's token sum   KEYS[3]: leases
-- KEYS[4]: circuit breaker        KEYS[5]: half-open probe          KEYS[6]: requests in the window
-- KEYS[7]: requests today
-- ARGV[1]: grant id   ARGV[2]: estimated tokens   ARGV[3]: actual tokens
-- ARGV[4]: outcome ('ok', 'failed', 'unused' or another)   ARGV[5]: breaker threshold   ARGV[6]: cooldown_ms
-- Returns: 1.
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

-- Take steps out of a batch buffer: whole batches, or everything (up to cap) once the
-- oldest step has waited its window, or when forced.
-- An emptied buffer leaves the lanes hash (an offer puts it back, atomically as well).
-- KEYS[1]: the buffer (taskapp:batchbuf:<lane>:<model>)   KEYS[2]: the lanes hash
-- ARGV[1]: max_size   ARGV[2]: max_wait_ms   ARGV[3]: force ('1' or '0')   ARGV[4]: cap
-- ARGV[5]: the lane's field in the hash
-- Returns: {now_ms, id1, score1, id2, score2, ...}, oldest first.
local max_size = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local force = ARGV[3] == '1'
local cap = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = redis.call('ZCARD', KEYS[1])
if n == 0 then
  redis.call('HDEL', KEYS[2], ARGV[5])
  return {now}
end
local oldest = tonumber(redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2])
local take
if force or now - oldest >= window then
  take = math.min(n, cap)
else
  take = math.min(n - (n % max_size), cap)
end
if take == 0 then return {now} end
local items = redis.call('ZRANGE', KEYS[1], 0, take - 1, 'WITHSCORES')
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, take - 1)
if take == n then redis.call('HDEL', KEYS[2], ARGV[5]) end
local out = {now}
for i = 1, #items do out[#out + 1] = items[i] end
return out

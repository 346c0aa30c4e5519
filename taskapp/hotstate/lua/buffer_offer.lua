-- Offer steps to a batch buffer (a sorted set scored by arrival time in ms).
-- KEYS[1]: the buffer (taskapp:batchbuf:<agent>:<model>)
-- ARGV:    the step ids; ids already waiting keep their place
-- Returns: the buffer's size after the offer.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 1, #ARGV do
  redis.call('ZADD', KEYS[1], 'NX', now, ARGV[i])
end
return redis.call('ZCARD', KEYS[1])

-- Offer steps to a batch buffer (a sorted set scored by arrival time in ms), and list its
-- lane where the flushers look (so a lane a new workflow version brings is flushed too).
-- KEYS[1]: the buffer (taskapp:batchbuf:<lane>:<model>)   KEYS[2]: the lanes hash
-- ARGV[1]: the lane's field in the hash ("<lane>|<model>")   ARGV[2]: its policy (JSON)
-- ARGV[3..]: the step ids; ids already waiting keep their place
-- Returns: the buffer's size after the offer.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 3, #ARGV do
  redis.call('ZADD', KEYS[1], 'NX', now, ARGV[i])
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return redis.call('ZCARD', KEYS[1])

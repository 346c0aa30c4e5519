-- Pause a model's calls fleet-wide (Gemini said 429): never shortens a longer pause.
-- KEYS[1]: pause until (ms)
-- ARGV[1]: for how long (ms)   ARGV[2]: until when (ms), or '' to use ARGV[1]
-- Returns: the pause's end (ms).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local untl = now + tonumber(ARGV[1])
if ARGV[2] ~= '' then untl = tonumber(ARGV[2]) end
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if untl > current then redis.call('SET', KEYS[1], untl, 'PX', math.max(1, untl - now)) end
return untl

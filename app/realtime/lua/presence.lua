-- Heartbeat this instance's local watcher count of a show and return the cluster-wide
-- count. Entries of instances that stopped heartbeating are dropped.
--
-- KEYS[1]  <prefix>:{show:ID}:presence hash: field = instance id, value = "<count>:<unix ms>"
-- ARGV[1]  instance id
-- ARGV[2]  this instance's watcher count (0 removes the field)
-- ARGV[3]  now, unix milliseconds
-- ARGV[4]  entries older than this many milliseconds are stale
--
-- Returns the sum of fresh counts.

local key = KEYS[1]
local count = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local stale_ms = tonumber(ARGV[4])

if count > 0 then
  redis.call("HSET", key, ARGV[1], count .. ":" .. now)
else
  redis.call("HDEL", key, ARGV[1])
end

local total = 0
local entries = redis.call("HGETALL", key)
for i = 1, #entries, 2 do
  local value = entries[i + 1]
  local sep = string.find(value, ":", 1, true)
  local c = tonumber(string.sub(value, 1, sep - 1))
  local at = tonumber(string.sub(value, sep + 1))
  if now - at > stale_ms then
    redis.call("HDEL", key, entries[i])
  else
    total = total + c
  end
end
if total > 0 then
  redis.call("PEXPIRE", key, stale_ms * 2)
end
return total

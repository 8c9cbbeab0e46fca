-- Publish one event of a show: assign the next offset, append to the bounded history and
-- fan out on the show's channel, atomically. Every key carries the hash tag {show:ID}.
--
-- KEYS[1]  modex:{show:ID}:meta          hash: e = epoch, n = top offset
-- KEYS[2]  modex:{show:ID}:stream        history, entry id "<n>-0", field d = event JSON
-- KEYS[3]  modex:{show:ID}:availability  cached counts, deleted when ARGV[5] == "1"
-- ARGV[1]  channel                       modex:{show:ID}:events
-- ARGV[2]  event JSON (without offset)
-- ARGV[3]  epoch to use when the show has none yet (Redis is new or lost its data)
-- ARGV[4]  history length (XADD MAXLEN ~)
-- ARGV[5]  "1" to invalidate the availability cache, "0" otherwise
-- ARGV[6]  seconds the meta hash and stream live after the last publish
--
-- Publishes "<epoch>:<n> <event JSON>" and returns {n, epoch}.

local meta_key = KEYS[1]
local stream_key = KEYS[2]
local availability_key = KEYS[3]
local channel = ARGV[1]
local event = ARGV[2]
local history_len = tonumber(ARGV[4])
local ttl = tonumber(ARGV[6])

local epoch = redis.call("HGET", meta_key, "e")
if not epoch then
  epoch = ARGV[3]
  redis.call("HSET", meta_key, "e", epoch)
  -- a history without its meta belongs to a lost epoch; its ids would collide
  redis.call("DEL", stream_key)
end

local n = redis.call("HINCRBY", meta_key, "n", 1)
redis.call("XADD", stream_key, "MAXLEN", "~", history_len, n .. "-0", "d", event)
redis.call("EXPIRE", meta_key, ttl)
redis.call("EXPIRE", stream_key, ttl)
if ARGV[5] == "1" then
  redis.call("DEL", availability_key)
end
redis.call("PUBLISH", channel, epoch .. ":" .. n .. " " .. event)
return {n, epoch}

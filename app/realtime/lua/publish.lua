-- Publish events of one show: assign each the next offset, append it to the bounded history
-- and fan it out on the show's channel, atomically and in the order given. Every key
-- carries the hash tag {show:ID}. One call takes every event of the show that a batch of
-- commits made, so the per-call work (epoch, expiry, cache) is paid once per batch.
--
-- KEYS[1]  <prefix>:{show:ID}:meta          hash: e = epoch, n = top offset
-- KEYS[2]  <prefix>:{show:ID}:stream        history, entry id "<n>-0", field d = event JSON
-- KEYS[3]  <prefix>:{show:ID}:availability  cached counts, deleted when ARGV[4] == "1"
-- ARGV[1]  channel                          <prefix>:{show:ID}:events
-- ARGV[2]  epoch to use when the show has none of ours yet (Redis is new or lost its data)
-- ARGV[3]  history length (XADD MAXLEN ~)
-- ARGV[4]  "1" to invalidate the availability cache, "0" otherwise
-- ARGV[5]  seconds the meta hash and stream live after the last publish
-- ARGV[6]  this namespace's epoch tag: readers drop events whose epoch lacks it, so an
--          epoch without it (left by a release before namespaces) is started anew
-- ARGV[7]  "PUBLISH" (one Redis) or "SPUBLISH" (a Redis Cluster: sharded pub/sub, the
--          channel carries the keys' hash tag, so it lives on this node)
-- ARGV[8..] the events' JSON (without offset)
--
-- Publishes "<epoch>:<n> <event JSON>" for each event and returns {last n, epoch}.

local meta_key = KEYS[1]
local stream_key = KEYS[2]
local availability_key = KEYS[3]
local channel = ARGV[1]
local history_len = tonumber(ARGV[3])
local ttl = tonumber(ARGV[5])
local tag = ARGV[6]
local publish = ARGV[7]
if publish ~= "PUBLISH" and publish ~= "SPUBLISH" then
  return redis.error_reply("publish.lua: ARGV[7] must be PUBLISH or SPUBLISH")
end
local first_event = 8
local count = #ARGV - first_event + 1

local epoch = redis.call("HGET", meta_key, "e")
if not epoch or string.sub(epoch, 1, #tag) ~= tag then
  epoch = ARGV[2]
  -- a history without its meta belongs to a lost epoch; its ids would collide
  redis.call("DEL", meta_key, stream_key)
  redis.call("HSET", meta_key, "e", epoch)
end

local last = redis.call("HINCRBY", meta_key, "n", count)
local n = last - count
for i = first_event, #ARGV do
  n = n + 1
  redis.call("XADD", stream_key, "MAXLEN", "~", history_len, n .. "-0", "d", ARGV[i])
  redis.call(publish, channel, epoch .. ":" .. n .. " " .. ARGV[i])
end
redis.call("EXPIRE", meta_key, ttl)
redis.call("EXPIRE", stream_key, ttl)
if ARGV[4] == "1" then
  redis.call("DEL", availability_key)
end
return {last, epoch}

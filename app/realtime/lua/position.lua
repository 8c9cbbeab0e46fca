-- The show's current position in its event stream, creating its epoch if it has none, so
-- a snapshot is always stamped with the epoch later events will carry.
--
-- KEYS[1]  modex:{show:ID}:meta    hash: e = epoch, n = top offset
-- KEYS[2]  modex:{show:ID}:stream  history (dropped when a new epoch starts)
-- ARGV[1]  epoch to use when the show has none yet
-- ARGV[2]  seconds the meta hash lives when it is created here
--
-- Returns {n, epoch}; n is 0 when nothing was published in this epoch.

local meta_key = KEYS[1]
local epoch = redis.call("HGET", meta_key, "e")
if not epoch then
  epoch = ARGV[1]
  redis.call("HSET", meta_key, "e", epoch)
  redis.call("EXPIRE", meta_key, tonumber(ARGV[2]))
  redis.call("DEL", KEYS[2])
end
local n = tonumber(redis.call("HGET", meta_key, "n") or "0")
return {n, epoch}

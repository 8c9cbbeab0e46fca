-- The show's current position in its event stream, starting an epoch of this namespace if
-- it has none (or only another namespace's), so a snapshot is always stamped with the epoch
-- later events will carry.
--
-- KEYS[1]  <prefix>:{show:ID}:meta    hash: e = epoch, n = top offset
-- KEYS[2]  <prefix>:{show:ID}:stream  history (dropped when a new epoch starts)
-- ARGV[1]  epoch to use when the show has none of ours yet (starts with ARGV[3])
-- ARGV[2]  seconds the meta hash lives when it is created here
-- ARGV[3]  this namespace's epoch tag: an epoch that does not start with it is foreign
--
-- Returns {n, epoch}; n is 0 when nothing was published in this epoch.

local meta_key = KEYS[1]
local tag = ARGV[3]
local epoch = redis.call("HGET", meta_key, "e")
if not epoch or string.sub(epoch, 1, #tag) ~= tag then
  epoch = ARGV[1]
  redis.call("DEL", meta_key, KEYS[2])
  redis.call("HSET", meta_key, "e", epoch)
  redis.call("EXPIRE", meta_key, tonumber(ARGV[2]))
end
local n = tonumber(redis.call("HGET", meta_key, "n") or "0")
return {n, epoch}

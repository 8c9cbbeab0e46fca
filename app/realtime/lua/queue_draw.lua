-- The draw at opening, one chunk at a time: give pre-queue customers their numbers (a
-- permutation the caller computed from a secret seed, so a new lease holder repeats the
-- same one). The last call (ARGV[2] = "1") marks the room drawn and empties the
-- pre-queue, only if the pre-queue still has ARGV[3] members (it cannot grow once open).
--
-- KEYS[1]  <prefix>:{show:ID}:wr:cfg hash
-- KEYS[2]  <prefix>:{show:ID}:wr:pre set
-- KEYS[3]  <prefix>:{show:ID}:wr:tickets hash
-- KEYS[4]  <prefix>:{show:ID}:wr:lease
-- ARGV[1]  this instance's id (the lease holder)
-- ARGV[2]  "1" on the last chunk
-- ARGV[3]  the pre-queue's size
-- ARGV[4..] customer id, number, customer id, number, ...
--
-- Returns 1 when done, 0 when this instance lost the lease or the room changed.

if redis.call('GET', KEYS[4]) ~= ARGV[1] or redis.call('HGET', KEYS[1], 'drawn') ~= '0' then
  return 0
end
for i = 4, #ARGV, 2 do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
end
if ARGV[2] == '1' then
  if redis.call('SCARD', KEYS[2]) ~= tonumber(ARGV[3]) then
    return 0
  end
  redis.call('HSET', KEYS[1], 'drawn', '1', 'pre_count', ARGV[3])
  redis.call('DEL', KEYS[2])
end
return 1

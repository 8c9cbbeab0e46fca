-- Take or keep a show's waiting-room lease: the one instance that draws and admits.
--
-- KEYS[1]  <prefix>:{show:ID}:wr:lease (string: the holder's instance id)
-- ARGV[1]  this instance's id
-- ARGV[2]  lease length, milliseconds
--
-- Returns 1 when this instance holds the lease (taken or renewed), else 0.

local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
  return 1
end
if holder then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
return 1

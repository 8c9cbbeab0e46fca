-- Admit the next customers of a show's waiting room: a token bucket kept in the room's
-- hash, so however many instances call it and however often, admissions follow the
-- elapsed time (rate x factor per minute) and never exceed it. Only the lease holder may
-- call it (checked here too: a holder that lost its lease while paused admits nothing).
--
-- KEYS[1]  <prefix>:{show:ID}:wr:cfg hash (opens_at, rate, factor, served, credit, last,
--          drawn, pre_count, late)
-- KEYS[2]  <prefix>:{show:ID}:wr:lease
-- ARGV[1]  this instance's id
-- ARGV[2]  most seconds of unused rate kept as credit (the largest burst)
--
-- Returns the number of customers admitted so far ("served": numbers up to it are in),
-- or -1 (not the lease holder), -2 (no room, or not drawn yet), -3 (not open yet).

if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return -1
end
local c = redis.call('HMGET', KEYS[1], 'opens_at', 'rate', 'factor', 'served', 'credit', 'last',
  'drawn', 'pre_count', 'late')
if not c[1] or c[7] ~= '1' then
  return -2
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local opens_at = tonumber(c[1])
if now < opens_at then
  return -3
end
local per_ms = tonumber(c[2]) * tonumber(c[3] or '1') / 60000
local last = tonumber(c[6] or '0')
if last < opens_at then
  last = opens_at
end
local cap = per_ms * tonumber(ARGV[2]) * 1000
if cap < 1 then
  cap = 1
end
local credit = tonumber(c[5] or '0') + (now - last) * per_ms
if credit > cap then
  credit = cap
end
local served = tonumber(c[4] or '0')
local waiting = tonumber(c[8] or '0') + tonumber(c[9] or '0') - served
local n = math.floor(credit)
if n > waiting then
  n = waiting
end
if n < 0 then
  n = 0
end
served = served + n
redis.call('HSET', KEYS[1], 'served', served, 'credit', tostring(credit - n), 'last', now)
return served

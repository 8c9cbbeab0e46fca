-- A customer's place in a show's waiting room, joining it first when ARGV[2] is "1".
-- Before the opening (and until the draw) arrivals go to the pre-queue set; from the
-- opening on, a newcomer's number is (pre-queue size) + (late arrivals so far), so it
-- comes after every early arrival whatever order the draw gives them. One place per
-- customer: a second join returns the first place.
--
-- KEYS[1]  <prefix>:{show:ID}:wr:cfg hash (opens_at ms, rate, factor, served, drawn,
--          pre_count, late)
-- KEYS[2]  <prefix>:{show:ID}:wr:pre set of customer ids
-- KEYS[3]  <prefix>:{show:ID}:wr:tickets hash: customer id -> number (1 = first)
-- ARGV[1]  customer id
-- ARGV[2]  "1": join if not there yet; "0": only look
--
-- Returns {number, served, opens_at, rate, factor, now_ms, pre_size, in_pre}: number -1
-- when the show has no waiting room; number 0 with in_pre 1 in the pre-queue, with in_pre
-- 0 not in the queue at all.

local cfg = redis.call('HMGET', KEYS[1], 'opens_at', 'rate', 'factor', 'served', 'drawn',
  'pre_count', 'late')
if not cfg[1] then
  return {-1, 0, 0, 0, '1', 0, 0, 0}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local opens_at = tonumber(cfg[1])
local drawn = cfg[5] == '1'
local pre_size = drawn and tonumber(cfg[6] or '0') or redis.call('SCARD', KEYS[2])
local function answer(number, in_pre)
  return {number, tonumber(cfg[4] or '0'), opens_at, tonumber(cfg[2]), cfg[3] or '1', now,
    pre_size, in_pre}
end

local number = redis.call('HGET', KEYS[3], ARGV[1])
if number then
  return answer(tonumber(number), 0)
end
if not drawn and redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then
  return answer(0, 1)
end
if ARGV[2] ~= '1' then
  return answer(0, 0)
end
if not drawn and now < opens_at then
  redis.call('SADD', KEYS[2], ARGV[1])
  pre_size = pre_size + 1
  return answer(0, 1)
end
number = pre_size + redis.call('HINCRBY', KEYS[1], 'late', 1)
redis.call('HSET', KEYS[3], ARGV[1], number)
return answer(number, 0)

-- ticket.lua: a flash ticket gets its answer from the order context.
--
-- KEYS[1] ticket hash, KEYS[2] the sale's PENDING tickets ZSET, KEYS[3] the ticket's
-- reservation hash, KEYS[4] reservation expiry ZSET, KEYS[5] sale hash, KEYS[6] the sale's
-- buyers hash
-- ARGV[1] the new status ("ORDERED" or "FAILED", shop_domain::flash::TicketStatus),
-- ARGV[2] the order id (ORDERED) or the reason (FAILED), ARGV[3] ticket id, ARGV[4] how long a
-- settled reservation record is kept (ms), ARGV[5] the PENDING and ARGV[6] the FAILED status,
-- ARGV[7] product key prefix. Runs after clock.lua and flash_units.lua (the component puts them first).
--
-- Returns {status}: the ticket's status after this call (unchanged when it was not PENDING), or
-- {"UNKNOWN"} when there is no such ticket.
--
-- Guarantees (one atomic step; idempotent: only a PENDING ticket changes, so a message
-- delivered twice changes nothing):
-- * ORDERED: the order id is recorded; the unit stays with the reservation the order holds.
-- * FAILED: the reason is recorded, the ticket's reservation (if still RESERVED) is released
--   and its unit goes back to the sale's `remaining` (or, the sale closed, to the product), and the buyer's count goes down by one
--   (no order came of it), all together, so a unit is neither lost nor given back twice.
local function int(n) return string.format('%.0f', n) end
local tk = redis.call('HMGET', KEYS[1], 'status', 'customer')
if not tk[1] then
  return {'UNKNOWN'}
end
if tk[1] ~= ARGV[5] then
  return {tk[1]}
end
redis.call('ZREM', KEYS[2], ARGV[3])
if ARGV[1] ~= ARGV[6] then
  redis.call('HSET', KEYS[1], 'status', ARGV[1], 'order_id', ARGV[2])
  return {ARGV[1]}
end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'reason', ARGV[2])
redis.call('HINCRBY', KEYS[6], tk[2], -1)
local r = redis.call('HMGET', KEYS[3], 'status', 'items')
if r[1] == 'RESERVED' then
  for _, item in ipairs(cjson.decode(r[2])) do
    give_back(KEYS[5], ARGV[7] .. item.sku, item.quantity)
  end
  redis.call('HSET', KEYS[3], 'status', 'RELEASED', 'settled_at', int(now_ms()),
    'settled_by', 'flash-refused')
  redis.call('ZREM', KEYS[4], redis.call('HGET', KEYS[1], 'reservation_id'))
  redis.call('PEXPIRE', KEYS[3], ARGV[4])
end
return {ARGV[1]}

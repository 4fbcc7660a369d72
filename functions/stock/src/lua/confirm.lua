-- confirm.lua: confirm a reservation (the order was paid): its units move reserved -> sold.
--
-- KEYS[1] reservation hash, KEYS[2] expiry ZSET
-- ARGV[1] reservation id, ARGV[2] product key prefix (product key = prefix .. sku),
-- ARGV[3] how long a settled record is kept, in milliseconds (the idempotency window),
-- ARGV[4] flash sale key prefix (sale key = prefix .. sale id)
--
-- This is the HTTP confirm (`POST /api/stock/reservations/{id}/confirm`). A paid order's
-- OrderPaid goes through fulfil.lua instead, which also sells a lapsed reservation.
--
-- Returns {outcome, status, expires_at_ms, items_json} with outcome
--   "DONE"      confirmed now, or already CONFIRMED (idempotent: units moved exactly once)
--   "CONFLICT"  it is RELEASED (explicitly or by expiry) and cannot be confirmed
--   "EXPIRED"   it was RESERVED but its expiry had passed: released now, instead of confirmed
-- or {"UNKNOWN"} when there is no such reservation.
--
-- Guarantees: the status check, the unit moves and the status change are one atomic step, as in
-- the domain's ReservationStatus::on table (RESERVED -> CONFIRMED; CONFIRMED stays; RELEASED is
-- refused), and its holder's holdings go down with it (holdings.lua: a paid order frees the
-- customer's caps). A reservation past its expiry is treated exactly as if the compensator had already
-- expired it, so the outcome never depends on when the compensator last ran.
-- A flash sale's reservation (field `sale`) also counts the unit sold in the sale (`sold`), or,
-- expired, gives it back (flash_units.lua, which runs before this file).
-- Product keys are derived from the stored lines (single Redis node; not Cluster-safe).

-- Integers as decimal strings: tostring() would write numbers >= 1e14 in exponent form.
local function int(n) return string.format('%.0f', n) end
local rkey, zkey = KEYS[1], KEYS[2]
local r = redis.call('HMGET', rkey, 'status', 'expires_at', 'items', 'sale')
if not r[1] then
  return {'UNKNOWN'}
end
if r[1] == 'CONFIRMED' then
  return {'DONE', r[1], r[2], r[3]}
end
if r[1] ~= 'RESERVED' then
  return {'CONFLICT', r[1], r[2], r[3]}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expired = now >= tonumber(r[2])
local items = cjson.decode(r[3])
let_go(rkey, items)
local sale = r[4] and (ARGV[4] .. r[4])
for _, item in ipairs(items) do
  local key = ARGV[2] .. item.sku
  if expired then
    give_back(sale, key, item.quantity)
  else
    if sale then redis.call('HINCRBY', sale, 'sold', item.quantity) end
    redis.call('HINCRBY', key, 'reserved', -item.quantity)
    redis.call('HINCRBY', key, 'sold', item.quantity)
  end
end
local status = expired and 'RELEASED' or 'CONFIRMED'
redis.call('HSET', rkey, 'status', status, 'settled_at', int(now),
  'settled_by', expired and 'expiry' or 'confirm')
redis.call('ZREM', zkey, ARGV[1])
redis.call('PEXPIRE', rkey, ARGV[3])
return {expired and 'EXPIRED' or 'DONE', status, r[2], r[3]}

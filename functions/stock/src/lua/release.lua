-- release.lua: release a reservation (the order was cancelled): its units go back to available.
--
-- KEYS[1] reservation hash, KEYS[2] expiry ZSET
-- ARGV[1] reservation id, ARGV[2] product key prefix (product key = prefix .. sku),
-- ARGV[3] how long a settled record is kept, in milliseconds (the idempotency window),
-- ARGV[4] flash sale key prefix (sale key = prefix .. sale id)
--
-- Returns {outcome, status, expires_at_ms, items_json} with outcome
--   "DONE"      released now, or already RELEASED (idempotent: units moved back exactly once)
--   "CONFLICT"  it is CONFIRMED (sold) and cannot be released
-- or {"UNKNOWN"} when there is no such reservation.
--
-- Guarantees: the status check, the unit moves (reserved -> available) and the status change
-- are one atomic step, as in the domain's ReservationStatus::on table; so is its holder's
-- holdings count going down (holdings.lua). A flash sale's reservation (field `sale`) gives its
-- units back to the sale's `remaining` instead, while the sale is open (flash_units.lua; both
-- libraries run before this file).
-- Product keys are derived from the stored lines (single Redis node; not Cluster-safe).

-- Integers as decimal strings: tostring() would write numbers >= 1e14 in exponent form.
local function int(n) return string.format('%.0f', n) end
local rkey, zkey = KEYS[1], KEYS[2]
local r = redis.call('HMGET', rkey, 'status', 'expires_at', 'items', 'sale')
if not r[1] then
  return {'UNKNOWN'}
end
if r[1] == 'RELEASED' then
  return {'DONE', r[1], r[2], r[3]}
end
if r[1] ~= 'RESERVED' then
  return {'CONFLICT', r[1], r[2], r[3]}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local items = cjson.decode(r[3])
let_go(rkey, items)
local sale = r[4] and (ARGV[4] .. r[4])
for _, item in ipairs(items) do
  give_back(sale, ARGV[2] .. item.sku, item.quantity)
end
redis.call('HSET', rkey, 'status', 'RELEASED', 'settled_at', int(now), 'settled_by', 'release')
redis.call('ZREM', zkey, ARGV[1])
redis.call('PEXPIRE', rkey, ARGV[3])
return {'DONE', 'RELEASED', r[2], r[3]}

-- fulfil.lua: a paid order's reservation is sold, whatever happened to it meanwhile.
--
-- Runs after the definitions of `publish` (the adapter's publish.lua) and of flash_units.lua,
-- which the component puts before this file.
--
-- KEYS[1] reservation hash, KEYS[2] expiry ZSET, KEYS[3..4] publish's keys for the `stock` topic
-- ARGV[1] reservation id, ARGV[2] product key prefix (product key = prefix .. sku),
-- ARGV[3] how long a settled record is kept, in milliseconds (the idempotency window),
-- ARGV[4..7] publish's leading arguments, ARGV[8] the id and ARGV[9] the envelope (JSON) of the
-- `PaidOrderOutOfStock` message that tells the order context, sent only when this call decides
-- SHORT; this script adds the short lines to its payload, ARGV[10] flash sale key prefix
--
-- Returns {outcome, status, expires_at_ms, items_json, ...} with outcome
--   "DONE"     RESERVED (even past its expiry: the units are still held) and sold now, or
--              CONFIRMED already (the same message again: nothing moves)
--   "RETAKEN"  it was RELEASED; the same units were all still available and are sold now
--   "SHORT"    it was RELEASED and they are not all available: nothing moved; followed by
--              sku, available pairs of the short lines
-- or {"UNKNOWN"} when there is no such reservation: nothing is decided or sent. A record is gone
-- only 30 days after it settled, so this is an old message replayed (e.g. a dead letter) or lost
-- Redis data, not a paid order to cancel: the caller raises an alert for an operator.
--
-- Guarantees (the domain's `ReservationStatus::fulfil`): the order context accepted the payment,
-- which is final, so a late OrderPaid still sells. The status check, the unit moves and the
-- status change are one atomic step; a retake is all lines or none, from `available` only, so
-- no unit is sold twice and `available` never goes below zero. A SHORT decision is written into
-- the record and answered again without looking at the stock: a redelivered message decides
-- the same way, even after a restock, so the one alert an operator acts on (a refund) stays true.
-- The message to the order context is appended in the same step as the SHORT decision, so it
-- is sent exactly once, when the decision is made (never lost, never sent for a later retake).
-- Numbers in it (quantities, available units <= ~1e12) stay exact in cjson's 14 digits.
-- A flash sale's reservation (field `sale`) counts the unit sold in the sale too; released, it
-- is retaken from where its release put it (flash_units.lua: the open sale's `remaining`, or
-- the closed sale's product `available`).
-- Product keys are derived from the stored lines (single Redis node; not Cluster-safe).

-- Integers as decimal strings: tostring() would write numbers >= 1e14 in exponent form.
local function int(n) return string.format('%.0f', n) end
local rkey, zkey = KEYS[1], KEYS[2]

-- Appends the PaidOrderOutOfStock message with the short lines in its payload.
local function announce(lines)
  local env = cjson.decode(ARGV[9])
  env.payload.short = lines
  publish({KEYS[3], KEYS[4]},
    {ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], cjson.encode(env)})
end

local r = redis.call('HMGET', rkey, 'status', 'expires_at', 'items', 'short', 'sale')
local sale = r[5] and (ARGV[10] .. r[5])
if not r[1] then
  return {'UNKNOWN'}
end
if r[1] == 'CONFIRMED' then
  return {'DONE', r[1], r[2], r[3]}
end
if r[4] then
  return {'SHORT', r[1], r[2], r[3], unpack(cjson.decode(r[4]))}
end
local items = cjson.decode(r[3])
local from = r[1] == 'RESERVED' and 'reserved' or 'available'
if from == 'available' then
  -- Quantities of the same product summed (as reserve.lua does), so `available` cannot go
  -- below zero even if a reservation held one SKU on two lines.
  local wanted, order = {}, {}
  for _, item in ipairs(items) do
    if not wanted[item.sku] then order[#order + 1] = item.sku end
    wanted[item.sku] = (wanted[item.sku] or 0) + item.quantity
  end
  local short, lines = {}, {}
  for _, sku in ipairs(order) do
    local available
    if sale then
      local from_key, from_field = retake_from(sale, ARGV[2] .. sku)
      available = tonumber(redis.call('HGET', from_key, from_field) or '0')
    else
      available = tonumber(redis.call('HGET', ARGV[2] .. sku, 'available') or '0')
    end
    if available < wanted[sku] then
      short[#short + 1] = sku
      short[#short + 1] = int(available)
      lines[#lines + 1] = {sku = sku, quantity = wanted[sku], available = available}
    end
  end
  if #short > 0 then
    -- The message first: should it fail (the script stops with an error, and Redis keeps
    -- what it wrote before), no shortfall is recorded that was never announced.
    announce(lines)
    redis.call('HSET', rkey, 'short', cjson.encode(short))
    return {'SHORT', r[1], r[2], r[3], unpack(short)}
  end
end
for _, item in ipairs(items) do
  local key = ARGV[2] .. item.sku
  if sale then
    local from_key, from_field = sale, 'remaining'
    if from == 'available' then
      from_key, from_field = retake_from(sale, key)
      redis.call('HINCRBY', from_key, from_field, -item.quantity)
    end
    redis.call('HINCRBY', sale, 'sold', item.quantity)
    -- Taken from the open sale (or still reserved): the product's reserved held it.
    if from_key ~= key then redis.call('HINCRBY', key, 'reserved', -item.quantity) end
  else
    redis.call('HINCRBY', key, from, -item.quantity)
  end
  redis.call('HINCRBY', key, 'sold', item.quantity)
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', rkey, 'status', 'CONFIRMED', 'settled_at', int(now),
  'settled_by', from == 'reserved' and 'confirm' or 'retake')
redis.call('ZREM', zkey, ARGV[1])
redis.call('PEXPIRE', rkey, ARGV[3])
return {from == 'reserved' and 'DONE' or 'RETAKEN', 'CONFIRMED', r[2], r[3]}

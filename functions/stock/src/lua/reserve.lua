-- reserve.lua: reserve every line of a reservation, all or nothing, idempotent by id.
--
-- KEYS[1] reservation hash, KEYS[2] expiry ZSET (member = reservation id, score = expires_at ms),
-- KEYS[3..] the product hash of each line, in line order
-- ARGV[1] reservation id, ARGV[2] TTL in milliseconds, ARGV[3] request fingerprint,
-- ARGV[4] number of lines n, then n pairs: sku, quantity
-- Hoarding caps, when the reservation is made for a customer: KEYS[3+n] the customer's holdings
--   hash (holdings.lua), ARGV[5+2n] the most RESERVED reservations (unpaid orders) a customer
--   may hold, ARGV[6+2n] the most units of one product ("" for no cap)
--
-- Returns one of
--   {"CREATED", status, expires_at_ms, items_json}   reserved now
--   {"EXISTING", status, expires_at_ms, items_json}  this id was already reserved: nothing moved
--                                                    (status EXPIRED: RESERVED but past its expiry)
--   {"MISMATCH"}                                      this id was used for a different request
--   {"UNKNOWN", sku...}                               no such product
--   {"MIXED", sku...}                                 the lines are priced in more than one currency
--   {"SHORT", sku, available, ...}                    not enough available units
--   {"CAP", "unpaid-orders", cap, held}               the customer holds `cap` reservations
--   {"CAP", "units-per-product", cap, sku, held}      this would take the customer past `cap`
--                                                     units of `sku` (they hold `held`)
--
-- Guarantees (the script runs atomically):
-- * All or nothing: every line is checked first (quantities of the same product summed), and
--   units move only when all lines fit, so `available` never goes below zero and no partial
--   reservation exists.
-- * available -> reserved for each line, so available + reserved + sold is unchanged.
-- * Idempotent: the reservation record, its expiry entry and the unit moves are written together,
--   and an existing id returns the stored result without moving units again.
-- * Prices and currencies are snapshot from the catalog into the record at reservation time, and
--   one reservation is in one currency: lines in several currencies are refused (MIXED) before
--   anything moves, so the caller needs no catalog read of its own first.
-- * expires_at comes from the Redis server clock, the one clock all instances share.
-- * Hoarding caps are checked and counted in the same step as the units move: concurrent
--   reservations of one customer can never together exceed a cap, and the holdings go down in
--   the same step as a reservation leaves RESERVED (release, confirm, expire, fulfil).

-- Integers as decimal strings: tostring() would write numbers >= 1e14 in exponent form.
local function int(n) return string.format('%.0f', n) end
local rkey, zkey = KEYS[1], KEYS[2]
local existing = redis.call('HMGET', rkey, 'status', 'expires_at', 'items', 'fingerprint')
if existing[1] then
  if existing[4] ~= ARGV[3] then
    return {'MISMATCH'}
  end
  -- A RESERVED record past its expiry holds nothing the caller can still rely on (the TTL sweep
  -- may release it any moment): answer EXPIRED, so the caller moves on to a new reservation id.
  if existing[1] == 'RESERVED' then
    local t = redis.call('TIME')
    if tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) >= tonumber(existing[2]) then
      return {'EXISTING', 'EXPIRED', existing[2], existing[3]}
    end
  end
  return {'EXISTING', existing[1], existing[2], existing[3]}
end

local n = tonumber(ARGV[4])
local unknown, short, wanted, products = {}, {}, {}, {}
for i = 1, n do
  local key, sku, qty = KEYS[2 + i], ARGV[3 + 2 * i], tonumber(ARGV[4 + 2 * i])
  local p = redis.call('HMGET', key, 'available', 'price', 'currency')
  if not p[1] then
    unknown[#unknown + 1] = sku
  else
    products[i] = p
    wanted[key] = (wanted[key] or 0) + qty
    if tonumber(p[1]) < wanted[key] then
      short[#short + 1] = sku
      short[#short + 1] = p[1]
    end
  end
end
if #unknown > 0 then
  return {'UNKNOWN', unpack(unknown)}
end
local currency, mixed = nil, false
for i = 1, n do
  currency = currency or products[i][3]
  if products[i][3] ~= currency then mixed = true end
end
if mixed then
  local skus = {}
  for i = 1, n do skus[i] = ARGV[3 + 2 * i] end
  return {'MIXED', unpack(skus)}
end
if #short > 0 then
  return {'SHORT', unpack(short)}
end

local holder = KEYS[3 + n]
if holder then
  local max_orders, max_units = tonumber(ARGV[5 + 2 * n]), tonumber(ARGV[6 + 2 * n])
  local held = tonumber(redis.call('HGET', holder, 'orders') or '0')
  if max_orders and held >= max_orders then
    return {'CAP', 'unpaid-orders', ARGV[5 + 2 * n], int(held)}
  end
  for i = 1, n do
    local sku = ARGV[3 + 2 * i]
    local units = tonumber(redis.call('HGET', holder, 'sku:' .. sku) or '0')
    if max_units and units + wanted[KEYS[2 + i]] > max_units then
      return {'CAP', 'units-per-product', ARGV[6 + 2 * n], sku, int(units)}
    end
  end
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expires_at = now + tonumber(ARGV[2])
local items = {}
for i = 1, n do
  local key, sku, qty = KEYS[2 + i], ARGV[3 + 2 * i], tonumber(ARGV[4 + 2 * i])
  redis.call('HINCRBY', key, 'available', -qty)
  redis.call('HINCRBY', key, 'reserved', qty)
  items[i] = {sku = sku, quantity = qty, unit_price = products[i][2], currency = products[i][3]}
end
local items_json = cjson.encode(items)
redis.call('HSET', rkey, 'status', 'RESERVED', 'items', items_json, 'fingerprint', ARGV[3],
  'created_at', int(now), 'expires_at', int(expires_at))
if holder then
  redis.call('HSET', rkey, 'holder', holder)
  redis.call('HINCRBY', holder, 'orders', 1)
  for i = 1, n do
    redis.call('HINCRBY', holder, 'sku:' .. ARGV[3 + 2 * i], tonumber(ARGV[4 + 2 * i]))
  end
end
redis.call('ZADD', zkey, int(expires_at), ARGV[1])
return {'CREATED', 'RESERVED', int(expires_at), items_json}

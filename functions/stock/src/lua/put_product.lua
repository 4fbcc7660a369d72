-- put_product.lua: create a product, or change an existing product's catalog fields, under a
-- fencing token.
--
-- KEYS[1] product hash, KEYS[2] fencing counter of the SKU
-- ARGV[1] fencing token from lock_acquire.lua, ARGV[2] name, ARGV[3] price (minor units),
-- ARGV[4] currency, ARGV[5] initial stock (becomes `available`), or "" when the client sent none
--
-- Returns {"OK", name, price, currency, available, reserved, sold},
-- {"STALE", token, latest} when the token is not the latest one issued for this SKU, or
-- {"HAS_STOCK", available} when ARGV[5] is given for a product that already exists.
--
-- Guarantees:
-- * Fencing: the write happens only if ARGV[1] is the newest token issued (a later lock was not
--   granted since) and newer than the token of the last applied write. A holder whose lock
--   expired while it was paused can therefore never overwrite the value of a newer holder, even
--   if it wakes up after that holder finished. The check and the write are one atomic step.
-- * Stock is set only when the product is created (available = ARGV[5] or 0, reserved = sold =
--   0). On an existing product this script never touches available, reserved or sold: a stock
--   value there is refused (HAS_STOCK, nothing written), because overwriting `available` would
--   undo every reservation and adjustment since the admin read it. Existence is checked in the
--   same atomic step as the write, so two racing creators cannot both set the stock.

-- Integers as decimal strings: tostring() would write numbers >= 1e14 in exponent form.
local function int(n) return string.format('%.0f', n) end
local fence = tonumber(ARGV[1])
local latest = tonumber(redis.call('GET', KEYS[2]) or '0')
local applied = tonumber(redis.call('HGET', KEYS[1], 'fence') or '0')
if fence ~= latest or fence <= applied then
  return {'STALE', int(fence), int(latest)}
end
local available = redis.call('HGET', KEYS[1], 'available')
if available and ARGV[5] ~= '' then
  return {'HAS_STOCK', available}
end
redis.call('HSET', KEYS[1], 'name', ARGV[2], 'price', ARGV[3], 'currency', ARGV[4],
  'fence', ARGV[1])
if not available then
  local stock = ARGV[5]
  if stock == '' then stock = '0' end
  redis.call('HSET', KEYS[1], 'available', stock, 'reserved', '0', 'sold', '0')
end
local p = redis.call('HMGET', KEYS[1], 'name', 'price', 'currency', 'available', 'reserved', 'sold')
return {'OK', p[1], p[2], p[3], p[4], p[5], p[6]}

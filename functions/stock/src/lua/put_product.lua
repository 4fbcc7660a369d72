-- put_product.lua: write a product's name, price and available stock under a fencing token.
--
-- KEYS[1] product hash, KEYS[2] fencing counter of the SKU
-- ARGV[1] fencing token from lock_acquire.lua, ARGV[2] name, ARGV[3] price (minor units),
-- ARGV[4] currency, ARGV[5] stock (becomes `available`)
--
-- Returns {"OK", name, price, currency, available, reserved, sold} or
-- {"STALE", token, latest} when the token is not the latest one issued for this SKU.
--
-- Guarantees:
-- * Fencing: the write happens only if ARGV[1] is the newest token issued (a later lock was not
--   granted since) and newer than the token of the last applied write. A holder whose lock
--   expired while it was paused can therefore never overwrite the value of a newer holder, even
--   if it wakes up after that holder finished. The check and the write are one atomic step.
-- * "stock" replaces `available` only: `reserved` and `sold` belong to outstanding and settled
--   reservations and are kept (created as 0 for a new product), so the invariant
--   available + reserved + sold changes only here.

-- Integers as decimal strings: tostring() would write numbers >= 1e14 in exponent form.
local function int(n) return string.format('%.0f', n) end
local fence = tonumber(ARGV[1])
local latest = tonumber(redis.call('GET', KEYS[2]) or '0')
local applied = tonumber(redis.call('HGET', KEYS[1], 'fence') or '0')
if fence ~= latest or fence <= applied then
  return {'STALE', int(fence), int(latest)}
end
redis.call('HSET', KEYS[1], 'name', ARGV[2], 'price', ARGV[3], 'currency', ARGV[4],
  'available', ARGV[5], 'fence', ARGV[1])
redis.call('HSETNX', KEYS[1], 'reserved', '0')
redis.call('HSETNX', KEYS[1], 'sold', '0')
local p = redis.call('HMGET', KEYS[1], 'name', 'price', 'currency', 'available', 'reserved', 'sold')
return {'OK', p[1], p[2], p[3], p[4], p[5], p[6]}

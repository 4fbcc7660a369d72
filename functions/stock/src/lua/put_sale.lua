-- put_sale.lua: create a flash sale, or change one that has not started, holding its units.
--
-- KEYS[1] sale hash, KEYS[2] product hash of the sale's SKU, KEYS[3] set of every sale id,
-- KEYS[4] ZSET of open sales scored by ends_at (close_sales.lua closes them)
-- ARGV[1] sale id, ARGV[2] sku, ARGV[3] price (minor units), ARGV[4] currency, ARGV[5] quantity,
-- ARGV[6] per-user limit, ARGV[7] starts_at ms, ARGV[8] ends_at ms
--
-- Returns one of
--   {"OK", created ("1"/"0")}          written
--   {"UNKNOWN_SKU"}                     no such product
--   {"CURRENCY", catalog_currency}      the price is not in the product's catalog currency
--   {"SHORT", available}                the product has fewer available units than the sale needs
--   {"STARTED", starts_at_ms}           the sale exists and has started: it can no longer change
--   {"SKU_CHANGE", sku}                 the sale exists for another SKU
--   {"ENDS_PAST", now_ms}               ends_at is not in the future
--
-- Guarantees (one atomic step):
-- * The sale holds its units like a reservation: `quantity` units move available -> reserved
--   of the product when it is created, so `available + reserved + sold` of the product is
--   unchanged and `available` never goes below zero (SHORT moves nothing).
-- * Before its start a sale may change (price, limit, window, quantity): a changed quantity
--   moves only the difference (again refused when available is short). Nothing can have been
--   bought yet (purchase.lua refuses before starts_at), so remaining = quantity. From its start
--   on it is refused (STARTED): buyers' tickets were decided under its terms.
-- * "Now" is the Redis server clock (TIME).

local function int(n) return string.format('%.0f', n) end
local skey, pkey = KEYS[1], KEYS[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local quantity = tonumber(ARGV[5])
if tonumber(ARGV[8]) <= now then
  return {'ENDS_PAST', int(now)}
end
local p = redis.call('HMGET', pkey, 'available', 'currency')
if not p[1] then
  return {'UNKNOWN_SKU'}
end
if p[2] ~= ARGV[4] then
  return {'CURRENCY', p[2]}
end
local s = redis.call('HMGET', skey, 'sku', 'starts_at', 'quantity')
local held = 0
if s[1] then
  if s[1] ~= ARGV[2] then
    return {'SKU_CHANGE', s[1]}
  end
  if tonumber(s[2]) <= now then
    return {'STARTED', s[2]}
  end
  held = tonumber(s[3])
end
local delta = quantity - held
if tonumber(p[1]) < delta then
  return {'SHORT', p[1]}
end
-- (Not with 0: Lua writes -0 as "-0", which HINCRBY refuses.)
if delta ~= 0 then
  redis.call('HINCRBY', pkey, 'available', -delta)
  redis.call('HINCRBY', pkey, 'reserved', delta)
end
redis.call('HSET', skey, 'sku', ARGV[2], 'price', ARGV[3], 'currency', ARGV[4],
  'quantity', ARGV[5], 'per_user_limit', ARGV[6], 'starts_at', ARGV[7], 'ends_at', ARGV[8],
  'remaining', ARGV[5])
if not s[1] then
  redis.call('HSET', skey, 'sold', '0', 'created_at', int(now))
end
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[8], ARGV[1])
return {'OK', s[1] and '0' or '1'}

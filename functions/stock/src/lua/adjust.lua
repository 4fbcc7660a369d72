-- adjust.lua: apply an admin stock adjustment (a signed delta on `available`), once per id.
--
-- KEYS[1] product hash, KEYS[2] adjustment hash
-- ARGV[1] sku, ARGV[2] delta (non-zero integer), ARGV[3] reason, ARGV[4] retention of the
-- record in seconds, ARGV[5] the most units `available` may hold
--
-- Returns one of
--   {"APPLIED", applied_at_ms, available, reserved, sold}   applied now; levels right after it
--   {"EXISTING", applied_at_ms, available, reserved, sold}  this id was applied before with the
--                                                           same sku, delta and reason: nothing
--                                                           moved, the stored answer again
--   {"MISMATCH"}                                            this id was used for another request
--   {"UNKNOWN"}                                             no such product
--   {"SHORT", available}                                    available + delta < 0
--   {"OVER", available}                                     available + delta > ARGV[5]
--
-- Guarantees (the script runs atomically):
-- * Only `available` moves, by exactly delta; `reserved` and `sold` are never touched, so every
--   outstanding reservation still confirms or releases correctly, and available + reserved + sold
--   changes by exactly the applied deltas.
-- * `available` never goes below zero (nor above ARGV[5], which keeps Lua arithmetic exact):
--   the check and the move are one step, so a concurrent reservation cannot slip between them.
-- * Idempotent: the move and the adjustment record are written together; a known id moves
--   nothing again. A refused adjustment (UNKNOWN, SHORT, OVER) writes nothing, so it may be
--   retried with the same id once it can succeed.
-- * The record expires ARGV[4] seconds after it was applied (the idempotency window).

-- Integers as decimal strings: tostring() would write numbers >= 1e14 in exponent form.
local function int(n) return string.format('%.0f', n) end
local pkey, akey = KEYS[1], KEYS[2]
local sku, delta, reason = ARGV[1], ARGV[2], ARGV[3]
local a = redis.call('HMGET', akey, 'sku', 'delta', 'reason', 'applied_at', 'available',
  'reserved', 'sold')
if a[1] then
  if a[1] ~= sku or a[2] ~= delta or a[3] ~= reason then
    return {'MISMATCH'}
  end
  return {'EXISTING', a[4], a[5], a[6], a[7]}
end

local p = redis.call('HMGET', pkey, 'available', 'reserved', 'sold')
if not p[1] then
  return {'UNKNOWN'}
end
local available = tonumber(p[1]) + tonumber(delta)
if available < 0 then
  return {'SHORT', p[1]}
end
if available > tonumber(ARGV[5]) then
  return {'OVER', p[1]}
end

local t = redis.call('TIME')
local now = int(tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
available = int(available)
redis.call('HSET', pkey, 'available', available)
redis.call('HSET', akey, 'sku', sku, 'delta', delta, 'reason', reason, 'applied_at', now,
  'available', available, 'reserved', p[2], 'sold', p[3])
redis.call('EXPIRE', akey, ARGV[4])
return {'APPLIED', now, available, p[2], p[3]}

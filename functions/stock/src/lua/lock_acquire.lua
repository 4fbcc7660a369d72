-- lock_acquire.lua: take the per-SKU admin write lock and issue a fencing token, atomically.
--
-- KEYS[1] lock key (string), KEYS[2] fencing counter (integer)
-- ARGV[1] random owner token, ARGV[2] lock TTL in milliseconds
--
-- Returns {"OK", fence} when this caller now holds the lock, {"BUSY", pttl} when another owner
-- does (pttl = its remaining milliseconds).
--
-- Guarantees: SET NX PX gives at most one live owner per SKU; a fencing token is issued if and
-- only if the lock was acquired, and tokens strictly increase per SKU (INCR), so the latest
-- token always belongs to the latest owner. put_product.lua refuses any older token.

-- Integers as decimal strings: tostring() would write numbers >= 1e14 in exponent form.
local function int(n) return string.format('%.0f', n) end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local fence = redis.call('INCR', KEYS[2])
  return {'OK', int(fence)}
end
return {'BUSY', int(redis.call('PTTL', KEYS[1]))}

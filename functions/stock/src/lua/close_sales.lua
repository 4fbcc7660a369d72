-- close_sales.lua: close one batch of flash sales whose window has ended. Runs after clock.lua.
--
-- KEYS[1] ZSET of open sales scored by ends_at (ms)
-- ARGV[1] "now" in ms, or "" for the Redis server clock, ARGV[2] sale key prefix,
-- ARGV[3] product key prefix, ARGV[4] batch size
--
-- Returns {"OK", closed, units_returned, still_due}.
--
-- Guarantees (one atomic step per batch; idempotent: a closed sale leaves the ZSET in the same
-- step, so overlapping sweeps never give its units back twice): an ended sale's `remaining`
-- units move from the product's `reserved` back to its `available` (`available + reserved +
-- sold` unchanged), `remaining` becomes 0 and the sale is marked `closed`; from then on a unit
-- let go by one of its orders goes back to the product (flash_units.lua), since no buyer can
-- take it from the sale any more (purchase.lua refuses after ends_at).
local function int(n) return string.format('%.0f', n) end
local now = now_ms(ARGV[1])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', int(now), 'LIMIT', 0, ARGV[4])
local closed, returned = 0, 0
for _, id in ipairs(due) do
  local skey = ARGV[2] .. id
  local s = redis.call('HMGET', skey, 'sku', 'remaining', 'closed', 'ends_at')
  if s[1] and not s[3] and tonumber(s[4]) <= now then
    local left = tonumber(s[2])
    if left > 0 then
      redis.call('HINCRBY', ARGV[3] .. s[1], 'reserved', -left)
      redis.call('HINCRBY', ARGV[3] .. s[1], 'available', left)
    end
    redis.call('HSET', skey, 'remaining', '0', 'closed', int(now), 'returned', int(left))
    closed = closed + 1
    returned = returned + left
  end
  redis.call('ZREM', KEYS[1], id)
end
local still_due = redis.call('ZCOUNT', KEYS[1], '-inf', int(now))
return {'OK', int(closed), int(returned), int(still_due)}

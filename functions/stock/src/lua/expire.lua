-- expire.lua: release one batch of reservations whose expiry has passed.
--
-- KEYS[1] expiry ZSET (member = reservation id, score = expires_at ms)
-- ARGV[1] "now" in ms, or "" for the Redis server clock, ARGV[2] batch size,
-- ARGV[3] reservation key prefix, ARGV[4] product key prefix,
-- ARGV[5] how long a settled record is kept, in milliseconds,
-- ARGV[6] grace in milliseconds: only reservations expired for longer are released (the
--   domain's EXPIRY_GRACE_MS, one rule for every caller: a paid order's late OrderPaid gets the
--   time to confirm)
-- ARGV[7] how long (ms) a held reservation waits before a sweep looks at it (and alerts) again
-- ARGV[8] flash sale key prefix (sale key = prefix .. sale id)
--
-- Returns {"OK", released, still_due, now_ms, held}: how many reservations this batch released,
-- how many are still due (the caller runs another batch while that is > 0), and how many due
-- ones it found held for a paid order (`paid_order`, set by hold.lua) whose OrderPaid has not
-- been applied yet: those keep their units, for the message's retry or an operator's replay of
-- its dead letter, and come back to a sweep ARGV[7] ms later, so the caller's alert repeats
-- until the message is applied (fulfil.lua takes it off the index).
--
-- Guarantees: each batch is one atomic step. A due reservation still RESERVED (and not held)
-- moves its units reserved -> available and becomes RELEASED; every other due id leaves the
-- ZSET, or (held) is put back ARGV[7] ms past the cutoff, in the same step, so two compensators
-- running concurrently (or a retry) never release anything twice, no batch sees a held one
-- twice, a reservation confirmed or released meanwhile is left as it is
-- (ReservationStatus::on: Expire on CONFIRMED or RELEASED is Unchanged), and one held for a
-- paid order keeps its units. A released one's holder's holdings go down in the same step
-- (holdings.lua). A flash sale's reservation (field `sale`) gives its units back to the sale's
-- `remaining` while the sale is open (flash_units.lua; clock.lua, holdings.lua and
-- flash_units.lua run before this file).
-- Product keys are derived from the stored lines (single Redis
-- node; not Cluster-safe).

-- Integers as decimal strings: tostring() would write numbers >= 1e14 in exponent form.
local function int(n) return string.format('%.0f', n) end
local zkey = KEYS[1]
local now = now_ms(ARGV[1])
local cutoff = now - tonumber(ARGV[6] or '0')
local ids = redis.call('ZRANGEBYSCORE', zkey, '-inf', int(cutoff), 'LIMIT', 0, ARGV[2])
local released, held = 0, 0
for _, id in ipairs(ids) do
  local rkey = ARGV[3] .. id
  local r = redis.call('HMGET', rkey, 'status', 'items', 'paid_order', 'sale')
  if r[1] == 'RESERVED' and r[3] then
    -- Paid: its units are the paid order's, whatever the clock says.
    held = held + 1
    redis.call('ZADD', zkey, int(cutoff + tonumber(ARGV[7])), id)
  elseif r[1] == 'RESERVED' then
    local items = cjson.decode(r[2])
    let_go(rkey, items)
    local sale = r[4] and (ARGV[8] .. r[4])
    for _, item in ipairs(items) do
      give_back(sale, ARGV[4] .. item.sku, item.quantity)
    end
    redis.call('HSET', rkey, 'status', 'RELEASED', 'settled_at', int(now), 'settled_by', 'expiry')
    redis.call('PEXPIRE', rkey, ARGV[5])
    released = released + 1
  end
  if not (r[1] == 'RESERVED' and r[3]) then
    redis.call('ZREM', zkey, id)
  end
end
local still_due = redis.call('ZCOUNT', zkey, '-inf', int(cutoff))
return {'OK', int(released), int(still_due), int(now), int(held)}

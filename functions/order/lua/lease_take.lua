-- lease_take.lua: claim an Idempotency-Key for one request, in Redis, without a SQLite write.
--
-- KEYS[1] the lease of one customer's key (`order:key-lease:<owner> <key>`: a key is scoped to
-- the customer who sent it), KEYS[2] the open leases (`order:open-leases`, a sorted set scored by
-- the time the lease was taken). A claim stored before keys were scoped keeps the old names
-- (`order:lease:<key>`, `order:leases`, members without an owner).
-- ARGV[1] this request's claim token, ARGV[2] the request's fingerprint, ARGV[3] the open-lease
-- member (`<attempt> <token> <fingerprint> <owner> <key>`), ARGV[4] lease length (ms), ARGV[5]
-- now (ms).
--
-- Returns {'TAKEN'}, or {'HELD', <fingerprint of the holder's request>}.
--
-- Guarantees (atomic): at most one request holds a customer's key's lease at a time; a lease ends when its
-- holder drops it (lease_drop.lua) or after ARGV[4] ms (its holder died or stalled: a retry may
-- take it over). The open-lease member outlives the lease: it stays until the holder drops it or
-- the order context's sweep has settled what the holder may have reserved under
-- `<attempt>` (functions/order/src/sweep.rs), so a request that died between reserving and
-- writing never keeps its stock beyond the sweep.
local held = redis.call('GET', KEYS[1])
if held then
  local fingerprint = string.match(held, '^[^ ]+ (.*)$') or ''
  return {'HELD', fingerprint}
end
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. ARGV[2], 'PX', ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[3])
return {'TAKEN'}

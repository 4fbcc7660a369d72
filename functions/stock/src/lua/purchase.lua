-- purchase.lua: one flash purchase, decided and recorded in one atomic step.
--
-- Runs after the definition of `publish` (the adapter's publish.lua), which the component puts
-- before this file.
--
-- KEYS[1] sale hash, KEYS[2] the sale's idempotency keys (hash: customer "\n" key -> ticket),
-- KEYS[3] the sale's buyers (hash: customer -> units taken), KEYS[4] the new ticket's hash,
-- KEYS[5] the new reservation's hash, KEYS[6] reservation expiry ZSET, KEYS[7] the sale's
-- PENDING tickets (ZSET scored by creation ms), KEYS[8..9] publish's keys for the `flash` topic
-- (stream, the set of doorbell pending marks)
-- ARGV[1] sale id, ARGV[2] customer, ARGV[3] idempotency key, ARGV[4] new ticket id,
-- ARGV[5] new reservation id, ARGV[6] reservation TTL ms, ARGV[7] ticket key prefix,
-- ARGV[8..11] publish's leading arguments, ARGV[12] the message id and ARGV[13] the envelope
-- (JSON, empty payload) of the FlashOrderRequested message; this script fills its payload
-- (shop_domain::flash::FlashOrderRequested) from what it decided.
--
-- Returns one of
--   {"CREATED", ticket_id}                                  a unit taken now
--   {"EXISTING", ticket_id, status, order_id, reason}       this customer's key was used before:
--                                                            its ticket, nothing taken
--   {"UNKNOWN"}                                             no such sale
--   {"NOT_STARTED", starts_at_ms} / {"ENDED", ends_at_ms}   outside the window
--   {"LIMIT", per_user_limit}                               the customer has all they may get
--   {"SOLD_OUT"}                                            no unit remains
--
-- Guarantees (the script runs atomically, so no other purchase interleaves):
-- * The key is checked first, before the window and the limits: a retry gets its ticket back
--   even after the sale sold out, ended, or the customer reached the limit, and never takes a
--   second unit.
-- * Check, then decrement, in one step: `remaining` is read and is >= 1 before it is
--   decremented, so it never goes below zero and exactly `quantity` units can be sold (the
--   test is `remaining < 1` -> SOLD_OUT, never an off-by-one `>=` on a counter).
-- * The order request is appended (XADD, inside publish) BEFORE anything of the purchase is
--   written (publish only remembers the message id first, `outbox:sent:<id>`: a fresh random
--   id, harmless if the XADD then fails). Redis does not roll a script back, so a failing XADD
--   (a full memory, a wrong key type) stops the script with nothing taken; once it succeeded,
--   the rest are plain writes that cannot fail. A message id publish already sent (its dedupe
--   memory; ids are random, so only a bug could reuse one) is not appended again: the script
--   then fails too, with nothing taken. A unit is therefore never taken without its order
--   request.
-- * The unit stays in the product's `reserved` (the sale holds it); the ticket's reservation
--   (status RESERVED, field `sale`) is the one the normal order flow confirms or releases, and
--   its release or expiry gives the unit back to the sale (release.lua, expire.lua).
-- * "Now" (window, expiry) is the Redis server clock, the one clock all instances share.
-- * Prices stay exact: cjson writes numbers with 14 digits, so the price is written into the
--   JSON as the decimal integer it is stored as.
-- Keys of existing tickets (ARGV[7] .. id) are not declared (single Redis node; not
-- Cluster-safe).

local function int(n) return string.format('%.0f', n) end
local skey, keys_key, buyers = KEYS[1], KEYS[2], KEYS[3]
local s = redis.call('HMGET', skey, 'sku', 'price', 'currency', 'per_user_limit', 'starts_at',
  'ends_at', 'remaining')
if not s[1] then
  return {'UNKNOWN'}
end
local who = ARGV[2] .. '\n' .. ARGV[3]
local known = redis.call('HGET', keys_key, who)
if known then
  local tk = redis.call('HMGET', ARGV[7] .. known, 'status', 'order_id', 'reason')
  return {'EXISTING', known, tk[1] or '', tk[2] or '', tk[3] or ''}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now < tonumber(s[5]) then
  return {'NOT_STARTED', s[5]}
end
if now >= tonumber(s[6]) then
  return {'ENDED', s[6]}
end
local bought = tonumber(redis.call('HGET', buyers, ARGV[2]) or '0')
if bought >= tonumber(s[4]) then
  return {'LIMIT', s[4]}
end
if tonumber(s[7]) < 1 then
  return {'SOLD_OUT'}
end

local ticket, rid = ARGV[4], ARGV[5]
local expires_at = now + tonumber(ARGV[6])
local env = cjson.decode(ARGV[13])
env.payload = {ticket_id = ticket, sale_id = ARGV[1], customer = ARGV[2], sku = s[1],
  quantity = 1, unit_price = '@@unit_price@@', currency = s[3], reservation_id = rid,
  expires_at_ms = '@@expires_at_ms@@'}
local envelope = cjson.encode(env)
envelope = string.gsub(envelope, '"@@unit_price@@"', s[2], 1)
envelope = string.gsub(envelope, '"@@expires_at_ms@@"', int(expires_at), 1)
-- First: the only write that can fail. publish skips a message id it sent before (its
-- dedupe memory): then nothing was appended, and nothing may be taken either.
local sent = publish({KEYS[8], KEYS[9]}, {ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12], envelope})
if sent[1] ~= '1' then
  return redis.error_reply('purchase.lua: order request ' .. ARGV[12] .. ' not appended (id sent before)')
end

redis.call('HINCRBY', skey, 'remaining', -1)
redis.call('HINCRBY', buyers, ARGV[2], 1)
redis.call('HSET', keys_key, who, ticket)
local items = cjson.encode({{sku = s[1], quantity = 1, unit_price = s[2], currency = s[3]}})
redis.call('HSET', KEYS[5], 'status', 'RESERVED', 'items', items, 'fingerprint', 'flash:' .. ticket,
  'created_at', int(now), 'expires_at', int(expires_at), 'sale', ARGV[1])
redis.call('ZADD', KEYS[6], int(expires_at), rid)
redis.call('HSET', KEYS[4], 'sale', ARGV[1], 'customer', ARGV[2], 'status', 'PENDING',
  'reservation_id', rid, 'created_at', int(now), 'message_id', ARGV[12], 'request', envelope)
redis.call('ZADD', KEYS[7], int(now), ticket)
return {'CREATED', ticket}

-- sale_view.lua: what GET /api/flash-sales/{id} shows, in one round trip: the sale's stored
-- fields, how many of its tickets are PENDING and, for a signed-in buyer, the units they hold.
--
-- KEYS[1] the sale hash, KEYS[2] its PENDING tickets ZSET, KEYS[3] its buyers hash
--   (customer -> units taken, purchase.lua)
-- ARGV[1] the buyer ("" for none), ARGV[2..] the sale fields to read, in order
--
-- Returns {"NONE"} when there is no such sale, else {"SALE", pending, bought, value...}: one
-- value per field asked, "" for a missing one; bought is "0" without a buyer.
--
-- Guarantees: read-only; one consistent snapshot (the script runs atomically).
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'NONE'}
end
local out = {'SALE', string.format('%d', redis.call('ZCARD', KEYS[2])), '0'}
if ARGV[1] ~= '' then
  out[3] = redis.call('HGET', KEYS[3], ARGV[1]) or '0'
end
local fields = {}
for i = 2, #ARGV do fields[#fields + 1] = ARGV[i] end
local values = redis.call('HMGET', KEYS[1], unpack(fields))
for i = 1, #fields do
  out[#out + 1] = values[i] or ''
end
return out

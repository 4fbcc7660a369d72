-- hold.lua: a reservation whose order was paid is held for it, before it is sold.
--
-- KEYS[1] reservation hash
-- ARGV[1] the order id (of the OrderPaid message)
--
-- Returns {status}: "HELD" when the reservation is RESERVED (it is marked now, or was already),
-- else its status ("CONFIRMED", "RELEASED") or "UNKNOWN" when there is no such reservation.
--
-- Guarantees: the stock receiver runs this before fulfil.lua on every delivery of an OrderPaid,
-- so from the first delivery on, even if selling keeps failing and the message ends up
-- dead-lettered, the reservation carries `paid_order` and the TTL sweep (expire.lua) never
-- releases it: the paid units cannot be sold to another buyer while the payment's message waits
-- for a retry or an operator's replay. A mark on a settled reservation would change nothing,
-- so only a RESERVED one is marked; the mark is idempotent (same order, same field).
local status = redis.call('HGET', KEYS[1], 'status')
if not status then
  return {'UNKNOWN'}
end
if status ~= 'RESERVED' then
  return {status}
end
redis.call('HSET', KEYS[1], 'paid_order', ARGV[1])
return {'HELD'}

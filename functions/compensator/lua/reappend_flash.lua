-- reappend_flash.lua: send again the order requests of a sale's tickets PENDING for too long.
--
-- KEYS[1] the sale's PENDING tickets ZSET (scored by creation or last re-append, ms),
-- KEYS[2] the flash stream (`events:flash`)
-- ARGV[1] how long (ms) a ticket may stay PENDING before its request is sent again,
-- ARGV[2] ticket key prefix, ARGV[3] the flash doorbell channel, ARGV[4] most tickets per call,
-- ARGV[5] the PENDING status
--
-- Returns {reappended, settled, unsendable} (as strings): requests sent again; ids that were no
-- longer PENDING (removed from the ZSET); PENDING tickets without a stored request (left as
-- they are, for an operator: counted in the report).
--
-- Guarantees (one atomic step, so overlapping compensator runs never send one request twice
-- in the same window): each due ticket's stored envelope is appended again under a new message
-- id (`<original id>-r<n>`: the order context's inbox would drop the original id, and must not
-- drop this one), and the ticket's score moves to now, so the next run waits another ARGV[1]
-- before sending it again. The order context is idempotent by ticket (flash_orders): a request
-- whose order exists announces that order again (the ticket becomes ORDERED); one whose order
-- was never created creates it. The envelope is edited as text (only its message id), never
-- decoded and encoded again, so its price stays exact.
-- Ticket keys are not declared (single Redis node; not Cluster-safe).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now - tonumber(ARGV[1])),
  'LIMIT', 0, ARGV[4])
local reappended, settled, unsendable = 0, 0, 0
for _, id in ipairs(due) do
  local tkey = ARGV[2] .. id
  local tk = redis.call('HMGET', tkey, 'status', 'request', 'message_id', 'reappended')
  if tk[1] ~= ARGV[5] then
    redis.call('ZREM', KEYS[1], id)
    settled = settled + 1
  elseif not (tk[2] and tk[3]) then
    unsendable = unsendable + 1
  else
    local n = tonumber(tk[4] or '0') + 1
    local from = '"message_id":"' .. tk[3] .. '"'
    local to = '"message_id":"' .. tk[3] .. '-r' .. n .. '"'
    local i, j = string.find(tk[2], from, 1, true)
    if not i then
      unsendable = unsendable + 1
    else
      local envelope = string.sub(tk[2], 1, i - 1) .. to .. string.sub(tk[2], j + 1)
      redis.call('XADD', KEYS[2], '*', 'm', envelope)
      redis.call('HSET', tkey, 'reappended', n)
      redis.call('ZADD', KEYS[1], string.format('%.0f', now), id)
      reappended = reappended + 1
    end
  end
end
if reappended > 0 then
  redis.call('PUBLISH', ARGV[3], '')
end
return {tostring(reappended), tostring(settled), tostring(unsendable)}

-- lease_move.lua: move a held lease to the key's next attempt (a new reservation id).
--
-- KEYS[1] the key's lease, KEYS[2] the open leases. ARGV[1] the holder's claim token,
-- ARGV[2] its open-lease member now, ARGV[3] the member for the next attempt.
--
-- Returns {'MOVED'}, or {'LOST'} when the lease is no longer this holder's (it ran out, and may
-- have been taken over): then nothing changes.
--
-- Guarantees (atomic): the open-lease member names the attempt whose reservation the holder may
-- hold, so the sweep settles the right one; it keeps the lease's original score.
local held = redis.call('GET', KEYS[1])
if not held or string.sub(held, 1, #ARGV[1] + 1) ~= ARGV[1] .. ' ' then
  return {'LOST'}
end
local score = redis.call('ZSCORE', KEYS[2], ARGV[2])
if not score then
  return {'LOST'}
end
redis.call('ZADD', KEYS[2], score, ARGV[3])
redis.call('ZREM', KEYS[2], ARGV[2])
return {'MOVED'}

-- lease_drop.lua: a request is done with its key (its outcome is in SQLite, or it stored nothing).
--
-- KEYS[1] the key's lease, KEYS[2] the open leases. ARGV[1] the claim token, ARGV[2] the
-- open-lease member, or '' to keep it (the sweep is to settle it).
--
-- Returns {'1'} when the lease was still this holder's and is now free, {'0'} otherwise.
--
-- Guarantees (atomic): the member, when named, is removed (nothing is left for the sweep to
-- settle); the lease is deleted only if it is still this holder's, never a lease a retry took
-- over.
if ARGV[2] ~= '' then
  redis.call('ZREM', KEYS[2], ARGV[2])
end
local held = redis.call('GET', KEYS[1])
if held and string.sub(held, 1, #ARGV[1] + 1) == ARGV[1] .. ' ' then
  redis.call('DEL', KEYS[1])
  return {'1'}
end
return {'0'}

-- lease_drop.lua: a request is done with its key (its outcome is in SQLite, or it stored nothing).
--
-- Defines `drop_lease(keys, argv)`: the lease_drop script is this file and `return
-- drop_lease(KEYS, ARGV)`; `publish_and_drop_lease.lua` runs it after sending what the request
-- committed. Below, KEYS and ARGV are its arguments.
--
-- KEYS[1] the key's lease, KEYS[2] the open leases. ARGV[1] the claim token, ARGV[2] the
-- open-lease member, or '' to keep it (the sweep is to settle it).
--
-- Returns {'1'} when the lease was still this holder's and is now free, {'0'} otherwise.
--
-- Guarantees (atomic): the member, when named, is removed (nothing is left for the sweep to
-- settle); the lease is deleted only if it is still this holder's, never a lease a retry took
-- over.
local function drop_lease(keys, argv)
  if argv[2] ~= '' then
    redis.call('ZREM', keys[2], argv[2])
  end
  local held = redis.call('GET', keys[1])
  if held and string.sub(held, 1, #argv[1] + 1) == argv[1] .. ' ' then
    redis.call('DEL', keys[1])
    return {'1'}
  end
  return {'0'}
end

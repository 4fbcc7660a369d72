-- lock_release.lua: release the per-SKU admin write lock only if we still own it.
--
-- KEYS[1] lock key
-- ARGV[1] the owner token this caller locked with
--
-- Returns {"RELEASED"} or {"NOT_OWNER"} (the lock expired and maybe someone else holds it now).
--
-- Guarantees: compare-and-delete in one step, so a caller whose lock expired can never delete
-- the lock of the next owner.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return {'RELEASED'}
end
return {'NOT_OWNER'}

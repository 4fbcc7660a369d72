-- dead_letters_purge.lua: drop the receivers' dead letters older than the retention.
--
-- KEYS[1] the index of dead-letter streams (`dead:index`)
-- ARGV[1] the cutoff in ms (Unix time): entries dead-lettered before it are deleted
--
-- Returns {deleted} (as a string).
--
-- Guarantees (atomic): each dead-letter stream keeps exactly its entries dead-lettered at or after
-- the cutoff (an entry's id is its dead-letter time; `XTRIM MINID`, exact); a stream left empty
-- is deleted and leaves the index in the same step, so the index names only streams with dead
-- letters (a new dead letter adds its stream again, settle.lua).
local deleted = 0
for _, s in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  deleted = deleted + redis.call('XTRIM', s, 'MINID', ARGV[1])
  if redis.call('XLEN', s) == 0 then
    redis.call('DEL', s)
    redis.call('SREM', KEYS[1], s)
  end
end
return {tostring(deleted)}

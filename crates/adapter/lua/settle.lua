-- settle.lua: the end of a receiver's batch, in one step: acknowledge what was applied, and move
-- what failed too often to the group's dead-letter stream.
--
-- KEYS[1] the stream (`events:<topic>`), KEYS[2] the group's dead-letter stream
-- (`dead:<topic>:<group>`), KEYS[3] the index of dead-letter streams (`dead:index`)
-- ARGV[1] group, ARGV[2] topic, ARGV[3] how many ids to acknowledge (n), ARGV[4..3+n] their
-- ids, then groups of four per message to dead-letter: entry id, deliveries, last error,
-- envelope (JSON).
--
-- Returns {acknowledged, dead_lettered} (as strings).
--
-- Guarantees (atomic): a dead-lettered message is in the dead-letter stream (fields `m`, `error`,
-- `deliveries`, `topic`, `group`, `source_id`) if and only if its entry is acknowledged, so it
-- is never both pending and dead, nor acknowledged and lost; its dead-letter stream is in the
-- index in the same step, so the operator's listing finds every one. The receiver runs this
-- only after the batch's SQLite transaction ended (committed or rolled back): no Redis call is
-- made while it holds the database's write lock. The dead-letter stream's entry id is its
-- dead-letter time (ms); the compensator trims entries older than the retention
-- (dead_letters_purge.lua).
local stream, dead, index = KEYS[1], KEYS[2], KEYS[3]
local group, topic = ARGV[1], ARGV[2]
local n = tonumber(ARGV[3])
local acked = 0
for i = 4, 3 + n do
  acked = acked + redis.call('XACK', stream, group, ARGV[i])
end
local dead_lettered = 0
for i = 4 + n, #ARGV, 4 do
  redis.call('XADD', dead, '*', 'm', ARGV[i + 3], 'error', ARGV[i + 2], 'deliveries', ARGV[i + 1],
    'topic', topic, 'group', group, 'source_id', ARGV[i])
  redis.call('XACK', stream, group, ARGV[i])
  dead_lettered = dead_lettered + 1
end
if dead_lettered > 0 then
  redis.call('SADD', index, dead)
end
return {tostring(acked), tostring(dead_lettered)}

-- dead_letter_replay.lua: put one receiver dead letter back on its stream.
--
-- KEYS[1] the dead-letter stream (`dead:<topic>:<group>`), KEYS[2] the index of dead-letter
-- streams (`dead:index`), KEYS[3] the topic's stream (`events:<topic>`)
-- ARGV[1] the dead letter's entry id, ARGV[2] the topic's doorbell channel
--
-- Returns {"REPLAYED", new entry id} or {"UNKNOWN"} (no such dead letter: never one, or replayed
-- already, or trimmed past its retention).
--
-- Guarantees (atomic): the envelope is appended to the topic's stream and the dead letter
-- deleted in one step, so one dead letter is replayed once however often (or concurrently) an
-- operator asks; the second ask finds nothing. The message keeps its message id: a receiver that
-- applied it meanwhile (every group of the topic reads the appended entry) drops it by its inbox
-- or its idempotent script. The doorbell rings so a subscribed receiver drains it now; a topic
-- nobody rings for (`events:stock`) is read on the compensator's periodic ring.
if redis.call('SISMEMBER', KEYS[2], KEYS[1]) == 0 then
  return {'UNKNOWN'}
end
local found = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #found == 0 then
  return {'UNKNOWN'}
end
local m
local fields = found[1][2]
for i = 1, #fields, 2 do
  if fields[i] == 'm' then m = fields[i + 1] end
end
if not m then
  return {'UNKNOWN'}
end
local id = redis.call('XADD', KEYS[3], '*', 'm', m)
redis.call('XDEL', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[2], '')
return {'REPLAYED', id}

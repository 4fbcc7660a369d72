-- publish.lua: append a batch of outbox messages to one stream, in order, in one round trip.
--
-- KEYS[1] the stream (`events:<topic>`), ARGV[1] approximate max length of the stream,
-- ARGV[2..] one JSON envelope each (stored in the entry's field `m`).
--
-- Returns {count} (as a string).
--
-- Guarantees (atomic): either every envelope is appended, in argument order, or none (a Redis
-- error aborts before any write only for bad arguments; XADD itself cannot fail half-way). The
-- stream is trimmed approximately (`MAXLEN ~`), never below ARGV[1] entries, so consumers that
-- lag by fewer entries lose nothing.
local n = 0
for i = 2, #ARGV do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'm', ARGV[i])
  n = n + 1
end
return {tostring(n)}

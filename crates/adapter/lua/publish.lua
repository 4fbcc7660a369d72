-- publish.lua: append a batch of outbox messages to one stream, in order, in one round trip,
-- skipping the ones already appended.
--
-- KEYS[1] the stream (`events:<topic>`), ARGV[1] approximate max length of the stream,
-- ARGV[2] how long (seconds) a message id is remembered as sent,
-- ARGV[3..] pairs: message id, JSON envelope (stored in the entry's field `m`).
--
-- Returns {appended, skipped} (as strings).
--
-- Guarantees (atomic): every envelope whose message id was not sent in the last ARGV[2] seconds
-- is appended, in argument order, and its id remembered (`outbox:sent:<id>`, SET NX EX) in the
-- same step; one already sent is skipped. So the request's fast path can send a message without
-- stamping it in SQLite (one write transaction less per request), and the relay that finds the
-- row unstamped after its grace stamps it without sending it twice. Past ARGV[2] a repeat is
-- appended again: receivers still drop duplicates by message id (their inbox). The stream is
-- trimmed approximately (`MAXLEN ~`), never below ARGV[1] entries. The remembered ids are keys
-- not declared in KEYS (single Redis node; not Cluster-safe).
local appended, skipped = 0, 0
for i = 3, #ARGV, 2 do
  if redis.call('SET', 'outbox:sent:' .. ARGV[i], '1', 'NX', 'EX', ARGV[2]) then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'm', ARGV[i + 1])
    appended = appended + 1
  else
    skipped = skipped + 1
  end
end
return {tostring(appended), tostring(skipped)}

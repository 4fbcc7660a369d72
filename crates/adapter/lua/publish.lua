-- publish.lua: append a batch of outbox messages to one stream, in order, in one round trip,
-- skipping the ones already appended.
--
-- Defines `publish(keys, argv)`: the outbox's script is this file and `return publish(KEYS,
-- ARGV)`; a script of a function may define it too, to send a batch in the same step as its
-- own work (the order's `publish_and_drop_lease.lua`). Below, KEYS and ARGV are its arguments.
--
-- KEYS[1] the stream (`events:<topic>`), KEYS[2] the set of the topic's pending marks, one per
-- consumer group (`doorbell:marks:<topic>`, holding `doorbell:pending:<topic>:<group>`; each
-- group's drain.lua adds its own), ARGV[1] how long (seconds) a message id is remembered as sent,
-- ARGV[2] the doorbell channel, ARGV[3] how long (ms) a pending mark lives at most, ARGV[4] '1'
-- to ring the doorbell, '0' to append only (the messages are read with the next ring),
-- ARGV[5..] pairs: message id, JSON envelope (stored in the entry's field `m`).
--
-- Returns {appended, skipped, rang} (as strings; rang is 1 when this call rang the doorbell).
--
-- Guarantees (atomic): every envelope whose message id was not sent in the last ARGV[1] seconds
-- is appended, in argument order, and its id remembered (`outbox:sent:<id>`, SET NX EX) in the
-- same step; one already sent is skipped. So the request's fast path can send a message without
-- stamping it in SQLite (one write transaction less per request), and the relay that finds the
-- row unstamped after its grace stamps it without sending it twice. Past ARGV[1] a repeat is
-- appended again: receivers still drop duplicates by message id (their inbox). The stream is
-- never trimmed here: a length limit ignores consumer groups and would delete entries a
-- receiver that is down has not read, after their outbox rows were stamped as sent. Only the
-- compensator trims, below what every group has acknowledged (compensator's trim_stream.lua).
-- The remembered ids are keys not declared in KEYS (single Redis node; not Cluster-safe).
--
-- Doorbell, coalesced per consumer group: when something was appended, the doorbell rings
-- (PUBLISH) unless every group has a ring pending, i.e. only if some group's pending mark was
-- absent (or no group ever drained); every absent mark is set in the same step. A receiver
-- deletes its own group's mark in the same script as its last read (drain.lua), so a message
-- appended before that read is read by it, and one appended after it rings again: no group
-- waits for a message without a ring on its way, even while another group of the topic is
-- still draining (one mark per topic would let the slower group's mark silence the ring the
-- faster one needs), and a burst of messages wakes each group once instead of once per message.
-- A receiver that dies holding its mark leaves what was appended meanwhile to the first message
-- published after the mark ran out (ARGV[3] ms), or to the compensator's periodic ring, which
-- does not depend on marks; a receiver whose drain fails deletes its mark. The marks named in
-- the set are keys not declared in KEYS (single Redis node; not Cluster-safe).
local function publish(keys, argv)
  local appended, skipped = 0, 0
  for i = 5, #argv, 2 do
    if redis.call('SET', 'outbox:sent:' .. argv[i], '1', 'NX', 'EX', argv[1]) then
      redis.call('XADD', keys[1], '*', 'm', argv[i + 1])
      appended = appended + 1
    else
      skipped = skipped + 1
    end
  end
  local rang = 0
  if appended > 0 and argv[4] == '1' then
    local marks = redis.call('SMEMBERS', keys[2])
    local unrung = #marks == 0
    for _, mark in ipairs(marks) do
      if redis.call('SET', mark, '1', 'NX', 'PX', argv[3]) then unrung = true end
    end
    if unrung then
      redis.call('PUBLISH', argv[2], '')
      rang = 1
    end
  end
  return {tostring(appended), tostring(skipped), tostring(rang)}
end

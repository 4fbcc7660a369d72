-- drain.lua: take up to ARGV[3] entries of a stream for one consumer group, in one round trip.
--
-- KEYS[1] the stream, KEYS[2] this group's doorbell pending mark, KEYS[3] the topic's set of
-- marks (publish.lua sets every mark in it), ARGV[1] group, ARGV[2] consumer,
-- ARGV[3] count, ARGV[4] min idle ms before another consumer's unacknowledged entry is taken
-- over, ARGV[5] '1' when this is the receiver's last read: the pending mark is deleted first.
--
-- Returns a flat list {id, deliveries, envelope, id, deliveries, envelope, ...}: entries
-- abandoned by a consumer that died (pending longer than ARGV[4], via XAUTOCLAIM) first, then
-- new entries (XREADGROUP '>'). `deliveries` counts how often the entry was handed out,
-- this time included.
--
-- Guarantees: the group is created on first use at the start of the stream (id 0, MKSTREAM),
-- so messages appended before any receiver ever ran are still delivered. Every returned entry is
-- pending for this group until XACKed, so a receiver that dies mid-batch loses nothing: its
-- entries are taken over after ARGV[4] ms. Entries trimmed away while pending are skipped.
-- With ARGV[5] = '1' the group's pending mark is deleted before reading, in this one atomic
-- step: every entry appended before it is returned now (or was earlier), and every one appended
-- after it rings the doorbell again (publish.lua), so the receiver can stop without leaving an
-- entry unrung. Other groups' marks are theirs: each group is rung for on its own.
local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
-- This group's mark joins the topic's set, so publishers ring for it from now on.
redis.call('SADD', KEYS[3], KEYS[2])
if ARGV[5] == '1' then
  redis.call('DEL', KEYS[2])
end
local count, min_idle = tonumber(ARGV[3]), ARGV[4]
local ok, err = pcall(redis.call, 'XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM')
if not ok and not string.find(tostring(err), 'BUSYGROUP') then
  return redis.error_reply(tostring(err))
end

local out = {}
local function field_m(fields)
  for i = 1, #fields, 2 do
    if fields[i] == 'm' then return fields[i + 1] end
  end
  return nil
end

local claimed = redis.call('XAUTOCLAIM', stream, group, consumer, min_idle, '0-0', 'COUNT', count)
for _, entry in ipairs(claimed[2]) do
  local id, fields = entry[1], entry[2]
  if fields then
    local m = field_m(fields)
    local p = redis.call('XPENDING', stream, group, id, id, 1)
    local deliveries = (p[1] and p[1][4]) or 1
    if m then
      out[#out + 1] = id
      out[#out + 1] = tostring(deliveries)
      out[#out + 1] = m
    else
      redis.call('XACK', stream, group, id)
    end
  end
end

local left = count - #out / 3
if left > 0 then
  local fresh = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', left, 'STREAMS', stream, '>')
  if fresh then
    for _, entry in ipairs(fresh[1][2]) do
      local m = field_m(entry[2])
      if m then
        out[#out + 1] = entry[1]
        out[#out + 1] = '1'
        out[#out + 1] = m
      else
        redis.call('XACK', stream, group, entry[1])
      end
    end
  end
end
return out

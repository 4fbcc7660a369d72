-- trim_stream.lua: where each consumer group of a stream stands and, with ARGV[1] = '1', the
-- entries every group is done with deleted, in one step.
--
-- KEYS[1] the stream. ARGV[1] '1' to trim, '0' to report only (the operator's view).
-- ARGV[2] how long (ms) entries are kept at least, acknowledged or not (recent traffic stays
-- readable for an operator; 0: trim as soon as every group has acknowledged).
--
-- Returns a flat list (Spin's outbound Redis flattens nested replies):
--   {now_ms, length, trimmed, group count,
--    then per group: name, lag, pending, oldest_pending_ms, oldest_unread_ms}
-- `now_ms` is Redis's clock (entry ids carry the same clock); `length` is counted after the
-- trim; a group's `lag` is the entries not yet delivered to it ('' when Redis cannot tell),
-- `pending` those delivered and not acknowledged, `oldest_pending_ms` the time (ms, from its id)
-- of the oldest pending entry and `oldest_unread_ms` that of the oldest entry the group has not
-- acknowledged, pending or not yet delivered ('' for none). No such stream: {now_ms, 0, 0, 0}.
--
-- Guarantees (atomic, so no group's progress moves between reading it and trimming):
-- * A stream without any consumer group is never trimmed: its receiver has not run yet, and
--   creates its group at the start of the stream (drain.lua) to read everything.
-- * Otherwise only entries older than every group's oldest unacknowledged entry are deleted
--   (XTRIM MINID, exact): a group's oldest pending entry, or, with nothing pending, its last
--   delivered one (which is kept: one entry, and no arithmetic on ids). Everything a group has
--   delivered is either acknowledged or pending (drain.lua acknowledges what it dead-letters),
--   so no entry that any group has not acknowledged is ever deleted. Nothing is trimmed by
--   length: a group that is far behind keeps the whole stream, and the compensator reports it.
-- * Entries younger than ARGV[2] ms (by their id, Redis's clock) are kept too.
-- * Deleting only below every group's position keeps Redis's `lag` exact (it is lost when
--   entries are deleted past a group's position).

-- Integers as decimal strings: tostring() would write numbers >= 1e14 in exponent form.
local function int(n) return string.format('%.0f', n) end

local stream, trim, keep_ms = KEYS[1], ARGV[1] == '1', tonumber(ARGV[2] or '0')
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now_ms = int(now)
if redis.call('EXISTS', stream) == 0 then
  return {now_ms, '0', '0', '0'}
end

-- An entry id `<ms>-<seq>`: its two parts as numbers (ms < 2^53, seq small: exact).
local function parts(id)
  local ms, seq = string.match(id, '^(%d+)%-(%d+)$')
  return tonumber(ms), tonumber(seq)
end

local function older(a, b)
  local am, as = parts(a)
  local bm, bs = parts(b)
  return am < bm or (am == bm and as < bs)
end

local function ms_of(id)
  if not id then return '' end
  return (string.match(id, '^(%d+)%-'))
end

-- XINFO GROUPS answers each group as a flat field, value list.
local function fields(list)
  local f = {}
  for i = 1, #list, 2 do f[list[i]] = list[i + 1] end
  return f
end

local groups, keep = {}, nil
for _, raw in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
  local g = fields(raw)
  local last = g['last-delivered-id']
  local summary = redis.call('XPENDING', stream, g['name'])
  local pending = tonumber(summary[1])
  local oldest_pending = pending > 0 and summary[2] or nil
  local unread = oldest_pending
  if not unread then
    local next = redis.call('XRANGE', stream, '(' .. last, '+', 'COUNT', 1)
    unread = next[1] and next[1][1] or nil
  end
  local from = oldest_pending or last
  if keep == nil or older(from, keep) then keep = from end
  local lag = g['lag'] and int(g['lag']) or ''
  groups[#groups + 1] = {g['name'], lag, int(pending), ms_of(oldest_pending), ms_of(unread)}
end

-- Nothing younger than the retention either: the older of the two bounds.
local young = int(math.max(now - keep_ms, 0)) .. '-0'
if keep and older(young, keep) then keep = young end

local trimmed = 0
if trim and keep then
  trimmed = redis.call('XTRIM', stream, 'MINID', keep)
end

local out = {now_ms, int(redis.call('XLEN', stream)), int(trimmed), int(#groups)}
for _, g in ipairs(groups) do
  for _, v in ipairs(g) do out[#out + 1] = v end
end
return out

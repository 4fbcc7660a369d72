-- breaker_status.lua: every circuit breaker's state and window counts, for GET /api/ops/breakers.
-- Runs after breaker_window.lua (window_counts), joined by breaker.rs.
--
-- KEYS[1] the set of breaker names (breaker_record.lua adds each)
-- ARGV[1] the state hash prefix, ARGV[2] the window hash prefix, ARGV[3] the probe key prefix
--   (key = prefix .. name; derived here: single Redis node, not Cluster-safe)
--
-- Returns a flat array of 9 strings per breaker: name, state ("closed", "open" or "half_open":
-- open past its open duration), open_until (ms, "" if never opened), calls and errors in the
-- error window, calls and slow calls in the slow window, "1" if a probe is in flight, now (ms).
--
-- Guarantees: read-only; one consistent snapshot (the script runs atomically), times from TIME.
local t = redis.call('TIME')
local now_s = tonumber(t[1])
local now_ms = now_s * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
local names = redis.call('SMEMBERS', KEYS[1])
table.sort(names)
for _, name in ipairs(names) do
  local s = redis.call('HMGET', ARGV[1] .. name, 'state', 'open_until', 'error_window', 'slow_window')
  local state = s[1] or 'closed'
  if state == 'open' and now_ms >= tonumber(s[2]) then state = 'half_open' end
  local ew, sw = tonumber(s[3] or '10'), tonumber(s[4] or '5')
  local ce, e, cs, sl = window_counts(redis.call('HGETALL', ARGV[2] .. name), now_s, ew, sw)
  local probing = redis.call('EXISTS', ARGV[3] .. name) == 1 and '1' or '0'
  local fmt = function(x) return string.format('%.0f', x) end
  out[#out + 1] = name
  out[#out + 1] = state
  out[#out + 1] = s[2] or ''
  out[#out + 1] = fmt(ce)
  out[#out + 1] = fmt(e)
  out[#out + 1] = fmt(cs)
  out[#out + 1] = fmt(sl)
  out[#out + 1] = probing
  out[#out + 1] = fmt(now_ms)
end
return out

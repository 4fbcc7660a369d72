-- breaker_record.lua: record the outcome of one downstream call in a circuit breaker, and open
-- or close it. Runs after breaker_window.lua (window_counts), joined by breaker.rs.
--
-- KEYS[1] the breaker's state hash (state, open_until, opened_at, and its windows' lengths for
--   the ops view), KEYS[2] its window hash (per-second buckets: "<second>:c" calls, ":e"
--   errors, ":s" slow calls), KEYS[3] its probe key, KEYS[4] the set of breaker names
-- ARGV[1] the breaker's name, ARGV[2] "error" or "ok", ARGV[3] "1" if the call was slow,
-- ARGV[4] "1" if this call was the half-open probe (guard.lua), ARGV[5] error window (s),
-- ARGV[6] slow window (s), ARGV[7] minimum calls in a window before it may open, ARGV[8] error
-- ratio (percent) above which it opens, ARGV[9] slow ratio (percent), ARGV[10] open duration (ms)
--
-- Returns {state, "1" if this outcome changed the state else "0"}.
--
-- Guarantees (atomic, time from the Redis server's TIME so every instance shares one window):
-- * The probe's outcome decides alone: success closes the breaker with an empty window, failure
--   opens it again for the open duration; the probe key is freed either way.
-- * While open, outcomes of calls admitted before it opened are not counted.
-- * Closed: the breaker opens when, over the error window, calls >= minimum and
--   errors > ratio, or over the slow window, calls >= minimum and slow calls > ratio; opening
--   empties the window, so the next closed period starts afresh.
local state_key, window_key, probe_key = KEYS[1], KEYS[2], KEYS[3]
local t = redis.call('TIME')
local now_s = tonumber(t[1])
local now_ms = now_s * 1000 + math.floor(tonumber(t[2]) / 1000)
local error_window, slow_window = tonumber(ARGV[5]), tonumber(ARGV[6])
local open_ms = tonumber(ARGV[10])
redis.call('SADD', KEYS[4], ARGV[1])

local function open()
  redis.call('HSET', state_key, 'state', 'open', 'opened_at', string.format('%.0f', now_ms),
    'open_until', string.format('%.0f', now_ms + open_ms),
    'error_window', ARGV[5], 'slow_window', ARGV[6])
  redis.call('DEL', window_key, probe_key)
  return {'open', '1'}
end

if ARGV[4] == '1' then
  if ARGV[2] == 'error' or ARGV[3] == '1' then
    return open()
  end
  redis.call('HSET', state_key, 'state', 'closed', 'closed_at', string.format('%.0f', now_ms),
    'error_window', ARGV[5], 'slow_window', ARGV[6])
  redis.call('DEL', window_key, probe_key)
  return {'closed', '1'}
end
if redis.call('HGET', state_key, 'state') == 'open' then
  return {'open', '0'}
end

local bucket = string.format('%.0f', now_s)
redis.call('HINCRBY', window_key, bucket .. ':c', 1)
if ARGV[2] == 'error' then redis.call('HINCRBY', window_key, bucket .. ':e', 1) end
if ARGV[3] == '1' then redis.call('HINCRBY', window_key, bucket .. ':s', 1) end
local longest = math.max(error_window, slow_window)
redis.call('EXPIRE', window_key, longest + 1)

local calls_e, errors, calls_s, slow, stale =
  window_counts(redis.call('HGETALL', window_key), now_s, error_window, slow_window)
for _, field in ipairs(stale) do redis.call('HDEL', window_key, field) end
local min_calls = tonumber(ARGV[7])
if (calls_e >= min_calls and errors * 100 > tonumber(ARGV[8]) * calls_e)
  or (calls_s >= min_calls and slow * 100 > tonumber(ARGV[9]) * calls_s) then
  return open()
end
redis.call('HSET', state_key, 'state', 'closed', 'error_window', ARGV[5], 'slow_window', ARGV[6])
return {'closed', '0'}

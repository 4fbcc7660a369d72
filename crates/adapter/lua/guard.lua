-- guard.lua: admit one request through several rate limits (GCRA) and, optionally, a circuit
-- breaker, in one round trip.
--
-- KEYS[1..n] one key per limit (a string: the limit's theoretical arrival time, in us); then,
--   when ARGV[2] is "1", KEYS[n+1] the breaker's state hash and KEYS[n+2] its probe key
-- ARGV[1] n, ARGV[2] "1" if a breaker is consulted, ARGV[3] how long a half-open probe may take
--   before another request may probe (ms), then per limit: ARGV[2+2i] its emission interval in
--   us (1e6 / rate per second), ARGV[3+2i] its burst (requests admitted at once from idle)
--
-- Returns a flat array of strings:
--   {"OK", limit, remaining, reset_s, "0"|"1"}  admitted; the figures are those of the tightest
--                                              limit (fewest remaining; "0" limits when n = 0),
--                                              the last item "1" if this request is the breaker's
--                                              one half-open probe
--   {"LIMITED", index, limit, retry_after_s, reset_s}  refused by limit `index` (1-based)
--   {"OPEN", retry_after_s}                            the breaker is open (or another request
--                                                      holds the half-open probe)
--
-- Guarantees (atomic):
-- * Time is the Redis server's (TIME): every instance of every component shares one clock, so
--   one limit holds across all of them: over any interval t, a limit admits at most
--   burst + rate * t requests.
-- * All or nothing: every limit is checked first; a request refused by one limit (or by the
--   breaker) consumes none of the others.
-- * A half-open breaker grants exactly one probe (SET NX PX): every other request is refused
--   until the probe's outcome is recorded (breaker_record.lua) or its PX runs out.
local n = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function ceil_s(us) return string.format('%.0f', math.ceil(us / 1000000)) end

local next_tat = {}
local best, best_remaining = 0, nil
for i = 1, n do
  local interval, burst = tonumber(ARGV[2 + 2 * i]), tonumber(ARGV[3 + 2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  local new_tat = tat + interval
  local allow_at = new_tat - burst * interval
  if allow_at > now then
    return {'LIMITED', tostring(i), tostring(burst), ceil_s(allow_at - now), ceil_s(tat - now)}
  end
  next_tat[i] = new_tat
  local remaining = math.floor((now - allow_at) / interval)
  if best_remaining == nil or remaining < best_remaining then
    best, best_remaining = i, remaining
  end
end

local probe = '0'
if ARGV[2] == '1' then
  local state = redis.call('HMGET', KEYS[n + 1], 'state', 'open_until')
  if state[1] == 'open' then
    local now_ms = math.floor(now / 1000)
    local open_until = tonumber(state[2] or '0')
    if now_ms < open_until then
      return {'OPEN', string.format('%.0f', math.ceil((open_until - now_ms) / 1000))}
    end
    -- Half-open: the first request to get here probes; the others fail fast meanwhile.
    if not redis.call('SET', KEYS[n + 2], tostring(now_ms), 'NX', 'PX', ARGV[3]) then
      return {'OPEN', '1'}
    end
    probe = '1'
  end
end

for i = 1, n do
  local ttl_ms = math.ceil((next_tat[i] - now) / 1000) + 1
  redis.call('SET', KEYS[i], string.format('%.0f', next_tat[i]), 'PX', ttl_ms)
end
if best == 0 then
  return {'OK', '0', '0', '0', probe}
end
local burst = ARGV[3 + 2 * best]
return {"OK", burst, tostring(best_remaining), ceil_s(next_tat[best] - now), probe}

-- breaker_window.lua: a library, not a script. breaker.rs joins it in front of
-- breaker_record.lua and breaker_status.lua, so the two read a breaker's window one way.
--
-- A window hash holds per-second buckets: "<second>:c" calls, "<second>:e" errors,
-- "<second>:s" slow calls (breaker_record.lua writes them).
--
-- window_counts(fields, now_s, error_window, slow_window) takes the hash's HGETALL reply and
-- returns calls and errors over the last error_window seconds, calls and slow calls over the
-- last slow_window seconds, and the fields of buckets older than both windows (for the caller
-- to delete; a read-only caller ignores them). Pure: it calls no Redis command.
local function window_counts(fields, now_s, error_window, slow_window)
  local longest = math.max(error_window, slow_window)
  local calls_e, errors, calls_s, slow, stale = 0, 0, 0, 0, {}
  for i = 1, #fields, 2 do
    local second, kind = string.match(fields[i], '^(%d+):(%a)$')
    local age, count = now_s - tonumber(second), tonumber(fields[i + 1])
    if age >= longest then
      stale[#stale + 1] = fields[i]
    else
      if age < error_window then
        if kind == 'c' then calls_e = calls_e + count elseif kind == 'e' then errors = errors + count end
      end
      if age < slow_window then
        if kind == 'c' then calls_s = calls_s + count elseif kind == 's' then slow = slow + count end
      end
    end
  end
  return calls_e, errors, calls_s, slow, stale
end

-- clock.lua: a library, not a script (redis.rs joins it in front of the scripts that use it).
--
-- now_ms(given): `given` in ms when it is not "" (the sweeps' callers may pass one, so a test
-- can move time), else the Redis server's clock (TIME), never the caller's, so every instance
-- shares one clock.
local function now_ms(given)
  if given ~= nil and given ~= '' then
    return tonumber(given)
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

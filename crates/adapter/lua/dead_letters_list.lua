-- dead_letters_list.lua: the receivers' dead letters, oldest first, for the operator's listing.
--
-- KEYS[1] the index of dead-letter streams (`dead:index`)
-- ARGV[1] entries listed per stream at most
--
-- Returns a flat list: the number of streams s, then s pairs {stream, length}, then per listed
-- entry seven strings {stream, entry id, topic, group, deliveries, last error, envelope}
-- ("" for a field an entry does not have).
--
-- Guarantees: read only; one consistent view of every dead-letter stream.
local streams = redis.call('SMEMBERS', KEYS[1])
table.sort(streams)
local out = {tostring(#streams)}
for _, s in ipairs(streams) do
  out[#out + 1] = s
  out[#out + 1] = tostring(redis.call('XLEN', s))
end
for _, s in ipairs(streams) do
  for _, entry in ipairs(redis.call('XRANGE', s, '-', '+', 'COUNT', ARGV[1])) do
    local f = {}
    for i = 1, #entry[2], 2 do f[entry[2][i]] = entry[2][i + 1] end
    out[#out + 1] = s
    out[#out + 1] = entry[1]
    out[#out + 1] = f.topic or ''
    out[#out + 1] = f.group or ''
    out[#out + 1] = f.deliveries or ''
    out[#out + 1] = f.error or ''
    out[#out + 1] = f.m or ''
  end
end
return out

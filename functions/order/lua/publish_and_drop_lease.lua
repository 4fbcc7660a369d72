-- publish_and_drop_lease.lua: a request that committed its outcome sends the messages it
-- appended and is done with its key, in one round trip instead of two.
--
-- Runs after the definitions of `publish` (the adapter's publish.lua) and `drop_lease`
-- (lease_drop.lua), which the component puts before this file.
--
-- KEYS[1..2] and ARGV[1..2]: lease_drop's keys and arguments; KEYS[3..] and ARGV[3..]:
-- publish's.
--
-- Returns {appended, skipped, rang, dropped}: publish's reply, then lease_drop's.
--
-- Guarantees (atomic): what each of the two scripts guarantees, in one step: the messages are
-- appended (unless already sent) before the lease is dropped, and a lease taken over meanwhile
-- stays its new holder's.
local publish_keys, publish_argv = {}, {}
for i = 3, #KEYS do
  publish_keys[#publish_keys + 1] = KEYS[i]
end
for i = 3, #ARGV do
  publish_argv[#publish_argv + 1] = ARGV[i]
end
local published = publish(publish_keys, publish_argv)
local dropped = drop_lease({KEYS[1], KEYS[2]}, {ARGV[1], ARGV[2]})
return {published[1], published[2], published[3], dropped[1]}

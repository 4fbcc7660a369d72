-- holdings.lua: a customer's holdings (hoarding caps), prepended to every script that takes a
-- reservation out of RESERVED (release, confirm, expire, fulfil; reserve.lua counts them up).
--
-- A reservation made for a customer records `holder`: the key of that customer's holdings hash
-- (`stock:holds:<customer>`: `orders` = their RESERVED reservations, `sku:<SKU>` = units they
-- hold of that product). let_go(rkey, items) is called in the same script, in the same atomic
-- step, as the reservation leaves RESERVED, so the counts always equal what the customer holds.
-- The holdings key is derived from the record (single Redis node; not Cluster-safe).
local function let_go(rkey, items)
  local holder = redis.call('HGET', rkey, 'holder')
  if not holder then return end
  local function drop(field, n)
    if redis.call('HINCRBY', holder, field, -n) <= 0 then redis.call('HDEL', holder, field) end
  end
  drop('orders', 1)
  for _, item in ipairs(items) do drop('sku:' .. item.sku, item.quantity) end
end

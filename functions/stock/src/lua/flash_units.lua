-- flash_units.lua: where a flash sale's unit goes when its reservation lets it go, and where a
-- released one is taken again from. A library: the scripts that settle reservations
-- (release.lua, expire.lua, confirm.lua, fulfil.lua, ticket.lua) are this file followed by
-- their own, so every one of them decides it the same way, in its own atomic step.
--
-- While the sale is open, its units live in the sale's `remaining` (the product's `reserved`
-- holds them for the sale, put_sale.lua). Once it closed (close_sales.lua: ended, what remained
-- given back to the product's `available`, field `closed` set), a unit let go goes back to the
-- product's `available` like any reservation's, and a released one is retaken from there.

-- Gives `qty` reserved units back: a flash reservation's to the open sale at `sale_key`; any
-- other reservation's (`sale_key` nil), or one of a sale that closed, from the product's
-- `reserved` to its `available`. The one place that decides where a let-go unit goes.
local function give_back(sale_key, product_key, qty)
  if not sale_key or redis.call('HEXISTS', sale_key, 'closed') == 1 then
    redis.call('HINCRBY', product_key, 'reserved', -qty)
    redis.call('HINCRBY', product_key, 'available', qty)
  else
    redis.call('HINCRBY', sale_key, 'remaining', qty)
  end
end

-- The key and field a released flash reservation's units are taken again from (a late
-- payment: fulfil.lua): the open sale's `remaining`, or the closed sale's product `available`.
local function retake_from(sale_key, product_key)
  if redis.call('HEXISTS', sale_key, 'closed') == 1 then
    return product_key, 'available'
  end
  return sale_key, 'remaining'
end

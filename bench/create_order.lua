-- wrk script: POST /api/orders with a fresh Idempotency-Key per request (one new order each).
-- Used by scripts/bench-orders.sh; the product BENCH-1 must exist with enough stock.
local counter = 0
local prefix = tostring(os.time()) .. "-" .. tostring(math.random(1, 1e9))

request = function()
  counter = counter + 1
  local headers = {
    ["content-type"] = "application/json",
    ["idempotency-key"] = prefix .. "-" .. counter,
    ["authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN"),
  }
  local body = '{"user_id":"bench-user","items":[{"sku":"BENCH-1","quantity":1}]}'
  return wrk.format("POST", "/api/orders", headers, body)
end

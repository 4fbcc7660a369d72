-- wrk script: POST /api/orders with a fresh Idempotency-Key per request (one new order each),
-- from the customers whose tokens are in BENCH_TOKENS (space-separated), in turn: orders are
-- sharded by customer, so the load spreads over the shards as a shop's customers would.
-- Used by scripts/bench-orders.sh; the product BENCH-1 must exist with enough stock.
local counter = 0
local prefix = tostring(os.time()) .. "-" .. tostring(math.random(1, 1e9))
local tokens = {}
for t in string.gmatch(os.getenv("BENCH_TOKENS") or os.getenv("BENCH_TOKEN"), "%S+") do
  table.insert(tokens, t)
end
local body = '{"items":[{"sku":"BENCH-1","quantity":1}]}'

request = function()
  counter = counter + 1
  local headers = {
    ["content-type"] = "application/json",
    ["idempotency-key"] = prefix .. "-" .. counter,
    ["authorization"] = "Bearer " .. tokens[(counter % #tokens) + 1],
  }
  return wrk.format("POST", "/api/orders", headers, body)
end

#!/usr/bin/env bash
# Measures order creation end to end (order -> stock over service chaining -> Redis Lua ->
# one SQLite transaction -> fast-path XADD) on the real spin.toml: a private redis-server and
# state dir, then `wrk -t1 -c${CONNS:-16} -d${SECS:-8}s` POSTing orders with a fresh
# Idempotency-Key each. Needs wrk (apt-get install -y wrk). Prints wrk's report (non-2xx
# answers are counted there) and how many orders reached SQLite.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-lib.sh
bench_start_app
curl -sf -X PUT "$base/api/products/BENCH-1" -H 'authorization: Bearer bench' \
  -H 'content-type: application/json' \
  -d '{"name":"Bench","price":100,"currency":"EUR","stock":100000000}' >/dev/null
wrk -t1 -c"${CONNS:-16}" -d"${SECS:-8}s" --latency -s bench/create_order.lua "$base"
echo "orders in SQLite: $(sqlite3 "$work/state/orders.db" 'SELECT COUNT(*) FROM orders')"

#!/usr/bin/env bash
# Measures order creation end to end (claim -> one chained reserve at stock -> Redis Lua -> one
# SQLite transaction -> fast-path XADD) on the real spin.toml: a private redis-server and state
# dir, then `wrk -t1 -c1` and `-c16` for ${SECS:-8} s each POSTing orders with a fresh
# Idempotency-Key, and, as the reference of the same run, a trivial component in the same host. Needs wrk (apt-get install -y wrk). Prints wrk's report (non-2xx
# answers are counted there) and how many orders reached SQLite.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-lib.sh
bench_start_app
curl -sf -X PUT "$base/api/products/BENCH-1" -H 'authorization: Bearer bench' \
  -H 'content-type: application/json' \
  -d '{"name":"Bench","price":100,"currency":"EUR","stock":100000000}' >/dev/null
secs=${SECS:-8}
for conns in 1 16; do
  echo "== orders, $conns connection(s)"
  wrk -t1 -c"$conns" -d"${secs}s" --latency -s bench/create_order.lua "$base" \
    | grep -E "Requests/sec|^ +(50|99)%|Non-2xx"
done
echo "orders in SQLite: $(sqlite3 "$work/state/orders.db" 'SELECT COUNT(*) FROM orders')"
echo "== trivial component (same host, same run), 16 connections"
wrk -t1 -c16 -d"${secs}s" --latency "$base/bench/hello" | grep -E "Requests/sec|^ +(50|99)%"

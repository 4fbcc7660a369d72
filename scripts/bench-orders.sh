#!/usr/bin/env bash
# Measures order creation end to end (claim -> one chained reserve at stock -> Redis Lua -> one
# SQLite transaction in a commit group -> fast-path XADD) on the real spin.toml: a private
# redis-server and state dir, then `wrk -t1 -c1` for ${SECS:-8} s, and ${ROUNDS:-3} rounds of
# `-c16` POSTing orders with a fresh Idempotency-Key, each followed by the reference of the same
# round: a trivial component in the same host at -c16 for as long. The machine's speed drifts
# between runs (shared VM), so each round's ratio is printed and the median is the figure.
# Needs wrk (apt-get install -y wrk). Prints wrk's report (non-2xx answers are counted there)
# and how many orders reached SQLite.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-lib.sh
bench_start_app
curl -sf -X PUT "$base/api/products/BENCH-1" -H 'authorization: Bearer bench' \
  -H 'content-type: application/json' \
  -d '{"name":"Bench","price":100,"currency":"EUR","stock":100000000}' >/dev/null
secs=${SECS:-8}
rps() { grep -E "^Requests/sec" | awk '{print $2}'; }
echo "== orders, 1 connection"
wrk -t1 -c1 -d"${secs}s" --latency -s bench/create_order.lua "$base" \
  | grep -E "Requests/sec|^ +(50|99)%|Non-2xx"
ratios=()
for round in $(seq "${ROUNDS:-3}"); do
  echo "== round $round: orders, 16 connections"
  out=$(wrk -t1 -c16 -d"${secs}s" --latency -s bench/create_order.lua "$base")
  echo "$out" | grep -E "Requests/sec|^ +(50|99)%|Non-2xx"
  orders=$(echo "$out" | rps)
  echo "== round $round: trivial component (same host), 16 connections"
  out=$(wrk -t1 -c16 -d"${secs}s" --latency "$base/bench/hello")
  echo "$out" | grep -E "Requests/sec|^ +(50|99)%"
  trivial=$(echo "$out" | rps)
  ratio=$(python3 -c "print(f'{$orders / $trivial:.4f}')")
  echo "round $round: ratio $ratio"
  ratios+=("$ratio")
done
echo "orders in SQLite: $(sqlite3 "$work/state/orders.db" 'SELECT COUNT(*) FROM orders')"
echo "median ratio (orders/s at 16 connections / trivial req/s): $(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')"

#!/usr/bin/env bash
# Order creation under both hosts in one run (issue 14): real Spin (`spin up`, the CLI of
# SPIN_BIN or ../shared/spin) and our spin-host, the same spin.toml and .wasm, each against its
# own references in the same app: a trivial component (Hello, world!) and the SQLite probe
# (bench/sqlite-probe: one 200-byte INSERT per request, no shop logic).
# For each host, each shard count in ${SHARD_COUNTS:-1 2 4} (order_shards) and each connection
# count in ${CONNECTIONS:-16 64}, `wrk -t1` for ${SECS:-5} s each:
#   1. orders: POST /api/orders with a fresh Idempotency-Key (bench/create_order.lua), then the
#      trivial component, then the order floor (the probe's tx=order-floor: an order's I/O in
#      its sequence with none of its logic: Redis GET, a chained request making one Redis
#      round trip, one write transaction on one of as many files as shards, one more Redis
#      command): orders/s, p99, the ratio orders / hello, and floor / hello, the highest
#      orders / hello any order with that I/O can reach under that host;
#   2. the probe, spread over as many files as the orders' shards: autocommit INSERT, one
#      BEGIN IMMEDIATE..COMMIT, two such transactions; with the file's journal mode and SQLite's
#      own busy handler (what Spin gives an app that sets nothing), then with the app's setup
#      (WAL, synchronous=FULL) and SQLite's busy handler, then with the app's setup and the app's
#      wait for the write lock (shop_adapter::sqlite::Tx::begin).
# PROBE=no skips step 2.
# Prints both tables (markdown) at the end; non-2xx answers are counted in the last column.
# Needs wrk (apt-get install -y wrk).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-lib.sh
bench_build
secs=${SECS:-5}
orders_table=$(mktemp); probe_table=$(mktemp)

# wrk against $1 (a path, or "orders") at $2 connections: "req/s p99_ms non2xx".
load() {
  if [[ $1 == orders ]]; then
    wrk -t1 -c"$2" -d"${secs}s" --latency -s bench/create_order.lua "$base" | wrk_figures
  else
    wrk -t1 -c"$2" -d"${secs}s" --latency "$base$1" | wrk_figures
  fi
}
cell() { awk '{printf "%s/s, p99 %s ms%s", $1, $2, ($3 > 0 ? ", " $3 " non-2xx" : "")}' <<<"$1"; }

for host in ${HOSTS:-spin spin-host}; do
  for shards in ${SHARD_COUNTS:-1 2 4}; do
    BENCH_SHARDS=$shards bench_start_app "$host"
    curl -sf -X PUT "$base/api/products/BENCH-1" -H 'authorization: Bearer bench' \
      -H 'content-type: application/json' \
      -d '{"name":"Bench","price":100,"currency":"EUR","stock":100000000}' >/dev/null
    for conns in ${CONNECTIONS:-16 64}; do
      orders=$(load orders "$conns"); hello=$(load /bench/hello "$conns")
      floor=$(load "/bench/sqlite?tx=order-floor&shards=$shards&redis=127.0.0.1:$rport" "$conns")
      echo "$host shards=$shards c=$conns orders: $orders hello: $hello order floor: $floor" >&2
      read -r o op ob <<<"$orders"; read -r h _ _ <<<"$hello"; read -r f fp fb <<<"$floor"
      [[ $fb == 0 ]] || { echo "the order floor answered $fb non-2xx" >&2; exit 1; }
      ratio=$(python3 -c "print(f'{$o / max($h, 1):.3f}')")
      fratio=$(python3 -c "print(f'{$f / max($h, 1):.3f}')")
      printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s, p99 %s ms | %s |\n' "$host" "$shards" "$conns" "$o" "$op ms" \
        "$ob" "$h" "$ratio" "$f" "$fp" "$fratio" >> "$orders_table"
      [[ ${PROBE:-yes} == no ]] && continue
      for setup in "journal=file&wait=sqlite" "journal=wal&wait=sqlite" "journal=wal&wait=app"; do
        row="| $host | $shards | $conns | ${setup/&/, } |"
        for tx in auto one two; do
          f=$(load "/bench/sqlite?tx=$tx&shards=$shards&$setup" "$conns")
          echo "$host shards=$shards c=$conns probe $setup tx=$tx: $f" >&2
          row+=" $(cell "$f") |"
        done
        echo "$row" >> "$probe_table"
      done
    done
    echo "$host shards=$shards: orders in SQLite: $(for f in "$work"/state/orders*.db; do sqlite3 "$f" 'SELECT COUNT(*) FROM orders' 2>/dev/null || echo 0; done | paste -sd+ | bc)" >&2
    bench_stop_app
  done
done

echo
echo "Order creation (${secs} s per figure; hello = the trivial component in the same app, same run)"
echo
echo "| host | shards | connections | orders/s | p99 | non-2xx | hello req/s | orders / hello | order floor | floor / hello |"
echo "|---|---|---|---|---|---|---|---|---|---|"
cat "$orders_table"
echo
echo "SQLite probe: one 200-byte INSERT per request over as many files as shards"
echo
echo "| host | files | connections | setup | autocommit INSERT | BEGIN IMMEDIATE; INSERT; COMMIT | two such transactions |"
echo "|---|---|---|---|---|---|---|"
cat "$probe_table"
rm -f "$orders_table" "$probe_table"

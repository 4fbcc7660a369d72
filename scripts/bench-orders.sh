#!/usr/bin/env bash
# Measures order creation end to end (order -> stock over service chaining -> Redis Lua ->
# one SQLite transaction) on the real spin.toml: a private redis-server and state dir, then
# `wrk -t1 -c${CONNS:-16} -d${SECS:-8}s` POSTing orders with a fresh Idempotency-Key each.
# Needs wrk (apt-get install -y wrk). Prints wrk's report (non-2xx answers are counted there)
# and how many orders reached SQLite.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install -y wrk)" >&2; exit 1; }
./scripts/build-wasm.sh >/dev/null
cargo build --release -p spin-host >/dev/null
work=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rport=$(free_port); hport=$(free_port)
redis-server --bind 127.0.0.1 --port "$rport" --save '' --appendonly no --dir "$work" \
  --daemonize yes --pidfile "$work/redis.pid" --logfile "$work/redis.log"
cleanup() {
  [[ -n "${host_pid:-}" ]] && kill "$host_pid" 2>/dev/null || true
  kill "$(cat "$work/redis.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
SPIN_VARIABLE_REDIS_HOST="127.0.0.1:$rport" SPIN_VARIABLE_ADMIN_TOKEN=bench \
SPIN_VARIABLE_PAYMENT_WEBHOOK_SECRET=bench \
  ./target/release/spin-host up --from spin.toml --listen "127.0.0.1:$hport" --state-dir "$work/state" \
  > "$work/host.log" 2>&1 &
host_pid=$!
for _ in $(seq 200); do grep -q "Serving" "$work/host.log" && break; sleep 0.1; done
curl -sf -X PUT "http://127.0.0.1:$hport/api/products/BENCH-1" -H 'authorization: Bearer bench' \
  -H 'content-type: application/json' \
  -d '{"name":"Bench","price":100,"currency":"EUR","stock":100000000}' >/dev/null
wrk -t1 -c"${CONNS:-16}" -d"${SECS:-8}s" --latency -s bench/create_order.lua "http://127.0.0.1:$hport"
echo "orders in SQLite: $(sqlite3 "$work/state/sqlite_db.db" 'SELECT COUNT(*) FROM orders')"

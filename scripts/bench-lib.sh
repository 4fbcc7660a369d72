# Shared by the benchmark scripts: a private redis-server and state dir, the real spin.toml and
# spin.receivers.toml in spin-host with a runtime config that puts every context's database in
# the state dir.
# After `bench_start_app`: $work (state), $rport (Redis), $hport (HTTP), $base (URL); the EXIT
# trap stops both. Needs wrk for the load phases (apt-get install -y wrk).

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

bench_start_app() {
  command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install -y wrk)" >&2; exit 1; }
  ./scripts/build-wasm.sh >/dev/null
  cargo build --release -p spin-host >/dev/null
  work=$(mktemp -d)
  rport=$(free_port); hport=$(free_port); base="http://127.0.0.1:$hport"
  redis-server --bind 127.0.0.1 --port "$rport" --save '' --appendonly no --dir "$work" \
    --daemonize yes --pidfile "$work/redis.pid" --logfile "$work/redis.log"
  trap bench_cleanup EXIT
  for _ in $(seq 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
  mkdir -p "$work/state"
  for label in orders payments coupons; do
    printf '[sqlite_database.%s]\ntype = "spin"\npath = "%s/state/%s.db"\n\n' "$label" "$work" "$label"
  done > "$work/runtime-config.toml"
  # Cron silenced: the benchmark drives the compensator itself. BENCH_ORDERS_DOORBELL=nobody
  # moves the stock receiver to a channel nobody rings (to measure what it costs).
  sed "s/^cron_expression = .*/cron_expression = \"0 0 0 1 1 *\"/" spin.toml > spin.bench.toml
  sed "s/^channel = \"doorbell:orders\"/channel = \"doorbell:${BENCH_ORDERS_DOORBELL:-orders}\"/" \
    spin.receivers.toml > spin.receivers.bench.toml
  # The reference in the same run: a trivial component (Hello, world!) in the same host.
  cat >> spin.bench.toml <<'TOML'

[[trigger.http]]
route = "/bench/hello"
component = "bench-hello"

[component.bench-hello]
source = "target/wasm32-wasip2/release/hello.wasm"
TOML
  # Orders need a customer token: a throwaway development key, and a token for `bench-user`
  # (BENCH_TOKEN, read by bench/create_order.lua and bench/backbone.py).
  cargo build --release -q -p devtools
  local jwks
  jwks=$(./target/release/spin-shop-dev keygen "$work/dev-jwt")
  BENCH_TOKEN=$(./target/release/spin-shop-dev token "$work/dev-jwt" bench-user 86400)
  export BENCH_TOKEN
  SPIN_VARIABLE_REDIS_HOST="127.0.0.1:$rport" SPIN_VARIABLE_ADMIN_TOKEN=bench SPIN_VARIABLE_INTERNAL_TOKEN=bench \
  SPIN_VARIABLE_PAYMENT_WEBHOOK_SECRET=bench SPIN_VARIABLE_AUTH_JWKS="$jwks" \
    ./target/release/spin-host up --from spin.bench.toml --from spin.receivers.bench.toml \
    --listen "127.0.0.1:$hport" \
    --state-dir "$work/state" --runtime-config-file "$work/runtime-config.toml" \
    > "$work/host.log" 2>&1 &
  host_pid=$!
  for _ in $(seq 200); do grep -q "Serving" "$work/host.log" && break; sleep 0.1; done
}

bench_cleanup() {
  [[ -n "${host_pid:-}" ]] && kill "$host_pid" 2>/dev/null || true
  kill "$(cat "$work/redis.pid")" 2>/dev/null || true
  rm -rf "$work" spin.bench.toml spin.receivers.bench.toml
}

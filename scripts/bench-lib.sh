# Shared by the benchmark scripts: a private redis-server and state dir, the real spin.toml and
# spin.receivers.toml with a runtime config that puts every context's database in the state dir,
# under either host:
#   bench_start_app spin-host   our host runs both apps in one process (spin-host up --from ...)
#   bench_start_app spin        the real Spin CLI runs them as two `spin up` (as scripts/up.sh --spin)
# Each app gets, as the reference in the same run, a trivial component at /bench/hello (Hello,
# world!) and the SQLite probe at /bench/sqlite (bench/sqlite-probe) granted the labels
# probe0..probe3 (left in the file's journal mode) and walprobe0..walprobe3 (set up by the app).
# After `bench_start_app`: $work (state), $rport (Redis), $hport (HTTP), $base (URL);
# `bench_stop_app` stops the app and Redis (the EXIT trap does too). Needs wrk.
# BENCH_SHARDS sets the order_shards variable when the manifest declares it.

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

bench_build() {
  command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install -y wrk)" >&2; exit 1; }
  ./scripts/build-wasm.sh >/dev/null
  cargo build --release -q -p spin-host -p devtools
  if [[ -z "${SPIN_BIN:-}" ]]; then
    if command -v spin >/dev/null; then SPIN_BIN=$(command -v spin)
    elif [[ -x ../shared/spin/install.sh ]]; then SPIN_BIN=$(../shared/spin/install.sh | tail -n 1)
    fi
  fi
}

# The manifests the benchmark runs: cron silenced (the benchmark drives the compensator itself),
# the references added. BENCH_ORDERS_DOORBELL=nobody moves the stock receiver to a channel nobody
# rings (to measure what it costs); BENCH_FLASH_DOORBELL=nobody does the same to the order
# receiver's flash trigger (no flash order is created during the run).
bench_manifests() {
  sed "s/^cron_expression = .*/cron_expression = \"0 0 0 1 1 *\"/" spin.toml > spin.bench.toml
  sed -e "s/^channel = \"doorbell:orders\"/channel = \"doorbell:${BENCH_ORDERS_DOORBELL:-orders}\"/" \
    -e "s/^channel = \"doorbell:flash\"/channel = \"doorbell:${BENCH_FLASH_DOORBELL:-flash}\"/" \
    spin.receivers.toml > spin.receivers.bench.toml
  cat >> spin.bench.toml <<'TOML'

[[trigger.http]]
route = "/bench/hello"
component = "bench-hello"

[component.bench-hello]
source = "target/wasm32-wasip2/release/hello.wasm"

[[trigger.http]]
route = "/bench/sqlite"
component = "bench-sqlite"

[component.bench-sqlite]
source = "target/wasm32-wasip2/release/sqlite_probe.wasm"
allowed_outbound_hosts = ["redis://{{ redis_host }}", "http://bench-sqlite.spin.internal"]
sqlite_databases = ["probe0", "probe1", "probe2", "probe3", "walprobe0", "walprobe1", "walprobe2", "walprobe3"]
[component.bench-sqlite.variables]
probe_variable = "{{ auth_issuer }}"
TOML
}

bench_start_app() {
  local host=${1:?bench_start_app needs spin-host or spin}
  work=$(mktemp -d)
  rport=$(free_port); hport=$(free_port); base="http://127.0.0.1:$hport"
  redis-server --bind 127.0.0.1 --port "$rport" --save '' --appendonly no --dir "$work" \
    --daemonize yes --pidfile "$work/redis.pid" --logfile "$work/redis.log"
  trap bench_cleanup EXIT
  for _ in $(seq 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
  mkdir -p "$work/state"
  # Every label runtime-config.toml defines, plus the probe's, as files in the state dir.
  local labels
  labels=$(sed -n 's/^\[sqlite_database\.\([^]]*\)\]$/\1/p' runtime-config.toml)
  for label in $labels probe0 probe1 probe2 probe3 walprobe0 walprobe1 walprobe2 walprobe3; do
    printf '[sqlite_database.%s]\ntype = "spin"\npath = "%s/state/%s.db"\n\n' "$label" "$work" "$label"
  done > "$work/runtime-config.toml"
  bench_manifests
  # Orders need customer tokens: a throwaway development key, a token for `bench-user`
  # (BENCH_TOKEN, read by bench/backbone.py) and one per benchmark customer (BENCH_TOKENS).
  local jwks
  jwks=$(./target/release/spin-shop-dev keygen "$work/dev-jwt")
  BENCH_TOKEN=$(./target/release/spin-shop-dev token "$work/dev-jwt" bench-user 86400)
  # Orders are sharded by customer: the load comes from ${BENCH_CUSTOMERS:-64} customers
  # (bench/create_order.lua takes one token per request, in turn), as a shop's would.
  BENCH_TOKENS=$(for i in $(seq "${BENCH_CUSTOMERS:-64}"); do
    ./target/release/spin-shop-dev token "$work/dev-jwt" "bench-user-$i" 86400; done | paste -sd' ')
  export BENCH_TOKEN BENCH_TOKENS
  export SPIN_VARIABLE_REDIS_HOST="127.0.0.1:$rport" SPIN_VARIABLE_ADMIN_TOKEN=bench \
    SPIN_VARIABLE_INTERNAL_TOKEN=bench SPIN_VARIABLE_PAYMENT_WEBHOOK_SECRET=bench \
    SPIN_VARIABLE_PAYMENT_SECRET_KEY=bench \
    SPIN_VARIABLE_AUTH_JWKS="$jwks" SPIN_VARIABLE_ORDER_SHARDS="${BENCH_SHARDS:-4}"
  # The guards (rate limits, hoarding caps, breaker) are off unless the caller exported them
  # (scripts/bench-guards.sh measures their cost): the other benchmarks fire bursts of orders as
  # a few customers, which the default caps refuse by design.
  local g
  for g in RATE_LIMIT_ORDER_CREATE RATE_LIMIT_ORDER_CREATE_PER_CUSTOMER RATE_LIMIT_ORDER_READ_PER_CUSTOMER \
    RATE_LIMIT_PRODUCT_READ_PER_CLIENT RATE_LIMIT_STOCK_RESERVE RATE_LIMIT_FLASH_SALE \
    RATE_LIMIT_FLASH_PER_CUSTOMER HOARDING_MAX_UNPAID_ORDERS HOARDING_MAX_UNITS_PER_PRODUCT \
    BREAKER_ORDER_STOCK; do
    [[ -n "$(printenv "SPIN_VARIABLE_$g")" ]] || export "SPIN_VARIABLE_$g=off"
  done
  local rc=(--runtime-config-file "$work/runtime-config.toml")
  pids=()
  case $host in
    spin-host)
      setsid ./target/release/spin-host up --from spin.bench.toml --from spin.receivers.bench.toml \
        --listen "127.0.0.1:$hport" --state-dir "$work/state" "${rc[@]}" > "$work/host.log" 2>&1 &
      pids+=("$!") ;;
    spin)
      [[ -n "${SPIN_BIN:-}" ]] || { echo "no Spin CLI (SPIN_BIN)" >&2; exit 1; }
      setsid "$SPIN_BIN" up -f spin.receivers.bench.toml --state-dir "$work/state" "${rc[@]}" \
        > "$work/receivers.log" 2>&1 &
      pids+=("$!")
      setsid "$SPIN_BIN" up -f spin.bench.toml --listen "127.0.0.1:$hport" --state-dir "$work/state" \
        "${rc[@]}" > "$work/host.log" 2>&1 &
      pids+=("$!") ;;
    *) echo "unknown host $host" >&2; exit 2 ;;
  esac
  for _ in $(seq 600); do
    curl -s -o /dev/null "$base/bench/hello" && break
    sleep 0.1
  done
  curl -sf -o /dev/null "$base/bench/hello" || { echo "$host did not start:" >&2; cat "$work"/*.log >&2; exit 1; }
}

# Each app runs in its own process group (setsid): `spin up` starts a process per trigger type,
# and all of them must be gone before the state dir is removed; so must Redis, which writes its
# log as it shuts down.
bench_stop_app() {
  local pid killer
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    (sleep 10; kill -KILL -- "-$pid" 2>/dev/null) & killer=$!
    wait "$pid" 2>/dev/null || true
    kill "$killer" 2>/dev/null || true
  done
  pids=()
  redis-cli -p "$rport" shutdown nosave >/dev/null 2>&1 || true
  for _ in $(seq 50); do kill -0 "$(cat "$work/redis.pid" 2>/dev/null)" 2>/dev/null || break; sleep 0.1; done
  rm -rf "$work" || { sleep 1; rm -rf "$work"; }
}

bench_cleanup() {
  [[ -n "${work:-}" && -d "$work" ]] && bench_stop_app
  rm -f spin.bench.toml spin.receivers.bench.toml
}

# wrk's figures as "req/s p99_ms non2xx".
wrk_figures() {
  awk '/^Requests\/sec/ {rps=$2}
       /^ +99%/ {v=$2; if (v ~ /us$/) {sub(/us$/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v=v*1000}; p99=v}
       /Non-2xx/ {bad=$NF}
       END {printf "%.0f %.1f %d\n", rps, p99, bad}'
}

#!/usr/bin/env bash
# What the rate limiter and the circuit breaker add to order creation (issue 15: under 20 %),
# under both hosts in one run: real Spin (`spin up`, the CLI of SPIN_BIN or ../shared/spin) and
# our spin-host, the same spin.toml and .wasm (scripts/bench-lib.sh).
# For each host, two copies of the app run side by side, each with its own Redis and state: one
# with the guards off, one with them on. Against them, ${ROUNDS:-5} rounds of `wrk -t1` for
# ${SECS:-3} s each at each connection count in ${CONNECTIONS:-64}, off then on, then on then
# off in the next round (so drift on a shared machine and the order of the two hit both alike):
# order creation (bench/create_order.lua, ${BENCH_CUSTOMERS:-64} customers in turn), then the
# trivial component (/bench/hello) of the same copy as its reference.
#   off: every limit, hoarding cap and the breaker "off" (the breaker keeps only its timeout on
#        the stock call: no admission, no outcome recorded).
#   on:  every limit checked on every request, at rates no run reaches (nothing is refused: the
#        non-2xx column must stay 0), the hoarding caps counted at a cap no run reaches, the
#        breaker as spin.toml sets it.
# Prints the table (markdown) and, per host and connection count, the added cost over all
# rounds: 1 - (on orders/s) / (off orders/s), and the same on orders/hello.
# Needs wrk (apt-get install -y wrk).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-lib.sh
bench_build
secs=${SECS:-3}
table=$(mktemp); figures=$(mktemp)
limits=(rate_limit_order_create rate_limit_order_create_per_customer rate_limit_order_read_per_customer
  rate_limit_product_read_per_client rate_limit_stock_reserve rate_limit_flash_sale rate_limit_flash_per_customer)
caps=(hoarding_max_unpaid_orders hoarding_max_units_per_product)
for v in "${limits[@]}" "${caps[@]}" breaker_order_stock; do
  grep -q "^$v = " spin.toml || { echo "spin.toml declares no $v: is this the guards' code?" >&2; exit 1; }
done
breaker_default=$(sed -n 's/^breaker_order_stock = { default = "\(.*\)" }$/\1/p' spin.toml)

# Exports the guard variables of setting $1 (off or on) for the next bench_start_app.
guards() {
  local v limit=off cap=off breaker=off
  if [[ $1 == on ]]; then limit="1000000/s burst 1000000" cap=1000000 breaker=$breaker_default; fi
  for v in "${limits[@]}"; do export "SPIN_VARIABLE_${v^^}=$limit"; done
  for v in "${caps[@]}"; do export "SPIN_VARIABLE_${v^^}=$cap"; done
  export SPIN_VARIABLE_BREAKER_ORDER_STOCK="$breaker"
}

# The two copies: bench_start_app's globals saved per setting, restored to use or stop one.
declare -A app_work app_rport app_base app_pids app_tokens
start_copy() {
  guards "$1"
  bench_start_app "$host"
  trap stop_copies EXIT  # bench_start_app set its own, for one app
  curl -sf -X PUT "$base/api/products/BENCH-1" -H 'authorization: Bearer bench' \
    -H 'content-type: application/json' \
    -d '{"name":"Bench","price":100,"currency":"EUR","stock":100000000}' >/dev/null
  app_work[$1]=$work app_rport[$1]=$rport app_base[$1]=$base app_pids[$1]="${pids[*]}" app_tokens[$1]=$BENCH_TOKENS
}
use_copy() {
  work=${app_work[$1]} rport=${app_rport[$1]} base=${app_base[$1]} BENCH_TOKENS=${app_tokens[$1]}
  read -r -a pids <<<"${app_pids[$1]}"
}
stop_copies() {
  local s
  for s in "${!app_work[@]}"; do
    use_copy "$s"
    [[ -d $work ]] && bench_stop_app
  done
  app_work=()
  rm -f spin.bench.toml spin.receivers.bench.toml
}
trap stop_copies EXIT

for host in ${HOSTS:-spin spin-host}; do
  start_copy off
  start_copy on
  for round in $(seq "${ROUNDS:-5}"); do
    order=(off on); ((round % 2)) || order=(on off)
    for setting in "${order[@]}"; do
      use_copy "$setting"
      for conns in ${CONNECTIONS:-64}; do
        orders=$(BENCH_TOKENS=$BENCH_TOKENS wrk -t1 -c"$conns" -d"${secs}s" --latency -s bench/create_order.lua "$base" | wrk_figures)
        hello=$(wrk -t1 -c"$conns" -d"${secs}s" --latency "$base/bench/hello" | wrk_figures)
        echo "$host round $round guards $setting c=$conns orders: $orders hello: $hello" >&2
        read -r o op ob <<<"$orders"; read -r h _ _ <<<"$hello"
        printf '| %s | %s | %s | %s | %s | %s ms | %s | %s | %s |\n' "$host" "$conns" "$round" "$setting" \
          "$o" "$op" "$ob" "$h" "$(python3 -c "print(f'{$o / max($h, 1):.3f}')")" >> "$table"
        echo "$host $conns $setting $o $h" >> "$figures"
      done
    done
  done
  stop_copies
done

echo
echo "Order creation with the guards off and on (${secs} s per figure; hello = the trivial component, same start)"
echo
echo "| host | connections | round | guards | orders/s | p99 | non-2xx | hello req/s | orders / hello |"
echo "|---|---|---|---|---|---|---|---|---|"
cat "$table"
echo
python3 - "$figures" <<'PY'
import sys
from collections import defaultdict
runs = defaultdict(lambda: {"off": [], "on": []})
for line in open(sys.argv[1]):
    host, conns, setting, orders, hello = line.split()
    runs[(host, conns)][setting].append((float(orders), float(hello)))
print("| host | connections | added cost (orders/s) | added cost (orders/hello) |")
print("|---|---|---|---|")
for (host, conns), r in runs.items():
    mean = lambda xs: sum(xs) / len(xs)
    norm = lambda s: mean([o / max(h, 1) for o, h in r[s]])
    raw = lambda s: mean([o for o, _ in r[s]])
    print(f"| {host} | {conns} | {1 - raw('on') / raw('off'):.1%} | {1 - norm('on') / norm('off'):.1%} |")
PY
rm -f "$table" "$figures"

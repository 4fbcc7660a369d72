#!/usr/bin/env bash
# Flash purchases over HTTP against the same purchase script run raw in Redis (issue 15), under
# both hosts in one run: real Spin (`spin up`, the CLI of SPIN_BIN or ../shared/spin) and our
# spin-host, the same spin.toml and .wasm (scripts/bench-lib.sh).
# For each host and each connection count in ${CONNECTIONS:-64}:
#   1. HTTP, twice: the load tool (shop-load flash) sends ${PURCHASES:-20000} purchases from as
#      many buyers, each with its own token signed ${TOKEN_ALG:-RS256} (RS256 is what identity
#      providers sign with by default), to a sale of 1,000,000 units (so none is refused), then
#      polls every ticket until ORDERED or FAILED: purchases/s, p99, non-202 answers, tickets
#      ORDERED. First with every purchase its buyer's first request (the app verifies the token's
#      signature in full), then with buyers signed in (shop-load --signed-in: one untimed
#      authenticated read each before the sale, so the app has remembered every token);
#   2. raw: redis-benchmark runs ${RAW_PURCHASES:-200000} EVALSHA calls of the SAME script on the
#      same Redis, at the same connection count: the script the app loaded (its SHA is checked
#      against SCRIPT LOAD of crates/adapter/lua/publish.lua + functions/stock/src/lua/purchase.lua,
#      joined as the component joins them), with the arguments the app sent for one purchase
#      (captured with MONITOR) and fresh buyers, keys and ids per call (__rand_int__), on a sale
#      of its own, its stream and doorbell renamed so the app's receiver never sees them
#      (bench/flash_raw_args.py). Every raw call must take a unit: the sale's `remaining` is
#      checked afterwards;
#   3. references in the same app and run, wrk for ${SECS:-5} s each: the trivial component
#      (/bench/hello), what the host serves with no work at all; the Redis floor (the SQLite
#      probe's tx=redis: a component that opens Redis and sends one PING, nothing else), the
#      ceiling of any request that makes a Redis round trip under that host; and reading one ticket
#      (GET /api/flash-sales/{id}/tickets/{ticket_id} with the buyer's token), the same component
#      verifying the same token and making one small Redis read instead of the purchase script.
# ORDERS_DURING_RUN=no moves the order receiver's flash trigger to a channel nobody rings
# (BENCH_FLASH_DOORBELL=nobody): the purchases are measured without the orders being created on
# the same two cores meanwhile, and the tickets are not polled (they stay PENDING).
# Prints the table (markdown) with the ratio HTTP / raw (issue 15's target: >= 0.25).
# Needs wrk (bench-lib), redis-benchmark (redis-tools), python3.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-lib.sh
bench_build
cargo build --release -q -p loadtool
command -v redis-benchmark >/dev/null || { echo "redis-benchmark is not installed (apt-get install -y redis-tools)" >&2; exit 1; }
poll=120
if [[ ${ORDERS_DURING_RUN:-yes} == no ]]; then export BENCH_FLASH_DOORBELL=nobody; poll=0; fi
purchases=${PURCHASES:-20000} raw_purchases=${RAW_PURCHASES:-200000} alg=${TOKEN_ALG:-RS256}
[[ $alg == RS256 || $alg == ES256 ]] || { echo "TOKEN_ALG=$alg: RS256 or ES256" >&2; exit 2; }
units=1000000
table=$(mktemp)
admin=(-H 'authorization: Bearer bench' -H 'content-type: application/json')

# The sale $1 of $units units of BENCH-FLASH, open for an hour, 1000 per buyer.
put_sale() {
  local now; now=$(date -u +%s)
  curl -sf -X PUT "$base/api/flash-sales/$1" "${admin[@]}" -d "{\"sku\":\"BENCH-FLASH\",\"price\":1,
    \"currency\":\"EUR\",\"quantity\":$units,\"per_user_limit\":1000,
    \"starts_at\":\"$(date -u -d "@$((now - 60))" +%FT%TZ)\",\"ends_at\":\"$(date -u -d "@$((now + 3600))" +%FT%TZ)\"}" >/dev/null
}
remaining() { curl -sf "$base/api/flash-sales/$1" -H 'authorization: Bearer bench' | python3 -c 'import json,sys; print(json.load(sys.stdin)["remaining"])'; }

# One purchase of sale bench-raw by bench-user, its purchase.lua call captured with MONITOR;
# sets $ticket, $sha and $raw_args (what redis-benchmark sends).
capture_purchase() {
  redis-cli -p "$rport" MONITOR > "$work/monitor.log" & local monitor=$!
  sleep 0.5
  ticket=$(curl -sf -X POST "$base/api/flash-sales/bench-raw/purchase" -H "authorization: Bearer $BENCH_TOKEN" \
    -H 'idempotency-key: bench-capture' | python3 -c 'import json,sys; print(json.load(sys.stdin)["ticket_id"])')
  sleep 0.5
  kill "$monitor"; wait "$monitor" 2>/dev/null || true
  mapfile -d '' raw_args < <(python3 bench/flash_raw_args.py "$work/monitor.log" "$ticket" bench-user bench-capture)
  [[ ${raw_args[0]^^} == EVALSHA ]] || { echo "the app did not call purchase.lua with EVALSHA: ${raw_args[0]}" >&2; exit 1; }
  sha=$( { cat crates/adapter/lua/publish.lua; printf '\n'; cat functions/stock/src/lua/purchase.lua; } |
    redis-cli -p "$rport" -x SCRIPT LOAD)
  [[ $sha == "${raw_args[1]}" ]] || { echo "the app's purchase script (${raw_args[1]}) is not publish.lua + purchase.lua ($sha)" >&2; exit 1; }
  raw_args=("${raw_args[@]:2}")
}

# One load tool run on a sale of its own, $1 connections; $2 `first`: every purchase is its
# buyer's first request (the token verified in full), `signed-in`: each buyer made one untimed
# authenticated read before (shop-load --signed-in; the app remembers the verified token).
# Writes "purchases/s p99 non-202 accepted ordered pending" to $work/http.txt.
flash_http() {
  local sale="bench-http-$1-$2" signed_in=()
  [[ $2 == signed-in ]] && signed_in=(--signed-in)
  put_sale "$sale"
  ./target/release/shop-load --base "$base" --admin-token bench --key "$work/dev-jwt/${alg,,}.pem" \
    --json --quiet -c "$1" --plot "${PLOT_DIR:-$work}/flash-$host-c$1-$2.svg" \
    flash --sale "$sale" --buyers "$purchases" "${signed_in[@]}" --poll-timeout-secs "$poll" > "$work/http.json"
  python3 -c '
import json,sys; r=json.load(open(sys.argv[1])); f=r["flash"]
print(round(r["requests_per_s"]), round(r["latency_ms"]["p99"],1), r["requests"]-r["status"].get("202",0),
      f["accepted"], f["ordered"], f["pending"])' "$work/http.json" > "$work/http.txt"
}

for host in ${HOSTS:-spin spin-host}; do
  bench_start_app "$host"
  curl -sf -X PUT "$base/api/products/BENCH-FLASH" "${admin[@]}" \
    -d "{\"name\":\"Bench flash\",\"price\":100,\"currency\":\"EUR\",\"stock\":$((units * 10))}" >/dev/null
  put_sale bench-raw
  capture_purchase
  for conns in ${CONNECTIONS:-64}; do
    flash_http "$conns" first
    read -r rps p99 non202 accepted ordered pending < "$work/http.txt"
    flash_http "$conns" signed-in
    read -r in_rps in_p99 in_non202 in_accepted in_ordered in_pending < "$work/http.txt"
    before=$(remaining bench-raw)
    redis-benchmark -p "$rport" -c "$conns" -n "$raw_purchases" -r 1000000000 --csv EVALSHA "$sha" "${raw_args[@]}" \
      > "$work/raw.csv"
    # The CSV's test name is the command, quotes unescaped: the figures are its last 7 fields.
    read -r raw_rps raw_p99 < <(python3 -c '
import sys; f=open(sys.argv[1]).read().strip().splitlines()[-1].rstrip("\"").rsplit("\",\"", 7)[1:]
print(round(float(f[0])), f[5])' "$work/raw.csv")
    taken=$((before - $(remaining bench-raw)))
    [[ $taken == "$raw_purchases" ]] || { echo "only $taken of $raw_purchases raw calls took a unit" >&2; exit 1; }
    read -r hello _ _ < <(wrk -t1 -c"$conns" -d"${SECS:-5}s" --latency "$base/bench/hello" | wrk_figures)
    read -r tickets _ tickets_bad < <(wrk -t1 -c"$conns" -d"${SECS:-5}s" --latency -H "authorization: Bearer $BENCH_TOKEN" \
      "$base/api/flash-sales/bench-raw/tickets/$ticket" | wrk_figures)
    [[ $tickets_bad == 0 ]] || { echo "GET ticket: $tickets_bad non-2xx answers" >&2; exit 1; }
    read -r floor _ floor_bad < <(wrk -t1 -c"$conns" -d"${SECS:-5}s" --latency \
      "$base/bench/sqlite?tx=redis&redis=127.0.0.1:$rport&n=1" | wrk_figures)
    [[ $floor_bad == 0 ]] || { echo "Redis floor probe: $floor_bad non-2xx answers" >&2; exit 1; }
    ratio() { python3 -c "print(f'{$1 / max($raw_rps, 1):.3f}')"; }
    echo "$host c=$conns first: $rps/s p99 $p99 ms, non-202 $non202, tickets $ordered/$accepted ORDERED ($pending pending); signed-in: $in_rps/s p99 $in_p99 ms, non-202 $in_non202, tickets $in_ordered/$in_accepted ORDERED ($in_pending pending); raw: $raw_rps/s p99 $raw_p99 ms; hello $hello/s; GET ticket $tickets/s; Redis floor $floor/s" >&2
    printf '| %s | %s | %s, p99 %s ms | %s | %s, p99 %s ms | %s | %s | %s of %s | %s | %s | %s | %s | %s |\n' "$host" "$conns" \
      "$rps" "$p99" "$(ratio "$rps")" "$in_rps" "$in_p99" "$(ratio "$in_rps")" "$((non202 + in_non202))" \
      "$((ordered + in_ordered))" "$((accepted + in_accepted))" "$raw_rps" "$hello" "$tickets" "$floor" \
      "$(ratio "$floor")" >> "$table"
  done
  bench_stop_app
done

echo
echo "Flash purchase: HTTP (shop-load, $purchases buyers per run, $alg tokens; orders created during the run: ${ORDERS_DURING_RUN:-yes}) vs the same purchase.lua by EVALSHA (redis-benchmark, $raw_purchases calls), same Redis, same run"
echo
echo "| host | connections | first-request purchases/s | / raw | signed-in purchases/s | / raw | non-202 | tickets ORDERED | raw EVALSHA/s | hello req/s | GET ticket req/s | Redis floor req/s | floor / raw |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
cat "$table"
rm -f "$table"

#!/usr/bin/env bash
# The event backbone under load (bench/backbone.py), under real Spin and under spin-host in one
# run (HOSTS to choose), on the real spin.toml with ${BENCH_SHARDS:-4} order shards:
# 1. order creation at ${CONNS:-16} connections for ${SECS:-8} s (wrk): orders/s;
# 2. the relay draining every one of those OrderCreated rows again (stamps cleared, stream
#    emptied), through `POST /api/compensator/run`: rows/s, as a ratio to the creation rate;
# 3. commit -> effect lag of payments: ${PAYMENTS:-400} signed webhooks at 16 connections, lag
#    = order PAID (order-events receiver) - payment outbox commit, p50/p99, on the fast path.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-lib.sh
bench_build
for host in ${HOSTS:-spin spin-host}; do
  echo "== $host"
  bench_start_app "$host"
  python3 bench/backbone.py "$base" "$work/state" "$rport"
  bench_stop_app
done

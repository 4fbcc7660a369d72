#!/usr/bin/env bash
# The event backbone under load, in one run on the real spin.toml (bench/backbone.py):
# 1. order creation at ${CONNS:-16} connections for ${SECS:-8} s (wrk): orders/s;
# 2. the relay draining every one of those OrderCreated rows again (stamps cleared, stream
#    emptied), through `POST /api/compensator/run`: rows/s, as a ratio to the creation rate;
# 3. commit -> effect lag of payments: ${PAYMENTS:-400} signed webhooks at 16 connections, lag
#    = order PAID (order-events receiver) - payment outbox commit, p50/p99, on the fast path.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-lib.sh
bench_start_app
python3 bench/backbone.py "$base" "$work/state" "$rport"

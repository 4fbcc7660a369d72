#!/usr/bin/env bash
# Runs every test: builds the wasm components, then the native workspace tests (domain, host,
# end-to-end). Tests start their own redis-server on a free loopback port; scripts/setup.sh
# installs what is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh test
./scripts/build-wasm.sh
# The real Spin CLI for the tests that run the app under `spin up` too (tests/tests/spin.rs).
if [[ -z "${SPIN_BIN:-}" && -x ../shared/spin/install.sh ]]; then
  SPIN_BIN=$(../shared/spin/install.sh | tail -n 1)
  export SPIN_BIN
fi
if [[ -z "${SPIN_BIN:-}" ]] && ! command -v spin >/dev/null; then
  echo "NOTE: no Spin CLI (SPIN_BIN unset, no spin on PATH): tests/tests/spin.rs will be SKIPPED" >&2
fi
# `spin-shop-dev` as scripts/up.sh runs it (the shards check) under tests/tests/spin.rs, which
# starts up.sh with --no-build: built here, as no cargo may run inside `cargo test`.
cargo build --release -q -p devtools
# Release profile: the host compiles components with Cranelift, far too slow unoptimised.
cargo test --release --workspace --exclude order --exclude stock --exclude coupon \
  --exclude payment-callback --exclude compensator "$@"
if [[ -z "${SPIN_BIN:-}" ]] && ! command -v spin >/dev/null; then
  echo "NOTE: the real-Spin test (tests/tests/spin.rs) was SKIPPED: no Spin CLI" >&2
fi

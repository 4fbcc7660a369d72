#!/usr/bin/env bash
# Installs what the README's two commands need and a fresh Debian/Ubuntu machine with only Rust
# lacks. `./scripts/up.sh` runs `setup.sh app`, `./scripts/test.sh` runs `setup.sh test`.
#
#   app:  the wasm32-wasip2 target, redis-server (unless SPIN_VARIABLE_REDIS_HOST is set),
#         python3 (free ports), openssl is not needed
#   test: the same, plus sqlite3 (tests read the databases as an operator would), xz-utils (the
#         real Spin CLI from ../shared/spin), and schemathesis (pinned) for the contract test
#
# System packages come from apt-get when running as root; otherwise it prints the exact command
# to run and stops. Safe to run again: it only installs what is missing.
set -euo pipefail
mode=${1:-app}
SCHEMATHESIS_VERSION=4.32.5

if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx wasm32-wasip2; then
  rustup target add wasm32-wasip2
fi

need=()
command -v python3 >/dev/null || need+=(python3)
if [[ "$mode" == test || -z "${SPIN_VARIABLE_REDIS_HOST:-}" ]]; then
  command -v redis-server >/dev/null || need+=(redis-server)
fi
if [[ "$mode" == test ]]; then
  command -v sqlite3 >/dev/null || need+=(sqlite3)
  command -v xz >/dev/null || need+=(xz-utils)
  python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
fi
if ((${#need[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "missing: ${need[*]}; install them with: sudo apt-get install -y ${need[*]}" >&2
    exit 1
  fi
fi

if [[ "$mode" == test ]]; then
  have=$(schemathesis --version 2>/dev/null | awk '{print $NF}' || true)
  if [[ "$have" != "$SCHEMATHESIS_VERSION" ]]; then
    python3 -m pip install --quiet "schemathesis==$SCHEMATHESIS_VERSION" \
      || python3 -m pip install --quiet --break-system-packages "schemathesis==$SCHEMATHESIS_VERSION"
    if command -v pyenv >/dev/null; then pyenv rehash; fi
  fi
fi

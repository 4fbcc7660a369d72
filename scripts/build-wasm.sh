#!/usr/bin/env bash
# Builds every wasm component (functions and host test components) in one cargo invocation,
# into target/wasm32-wasip2/release/, where spin.toml and the tests look for them.
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=()
while read -r p; do
  [[ -z "$p" || "$p" == \#* ]] && continue
  pkgs+=(-p "$p")
done < scripts/wasm-packages
cargo build --target wasm32-wasip2 --release "${pkgs[@]}"

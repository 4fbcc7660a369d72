#!/usr/bin/env bash
# Runs the whole app locally on embedded defaults: SQLite files under .spin/, and a local
# redis-server on a free loopback port unless SPIN_VARIABLE_REDIS_HOST points at one already.
# Extra arguments go to `spin-host up` (e.g. --listen 127.0.0.1:8080).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .spin

./scripts/setup.sh app

if [[ -z "${SPIN_VARIABLE_REDIS_HOST:-}" ]]; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  mkdir -p .spin/redis
  redis-server --bind 127.0.0.1 --port "$port" --dir .spin/redis --save 60 1 --appendonly yes \
    --daemonize yes --pidfile "$PWD/.spin/redis/redis.pid" --logfile "$PWD/.spin/redis/redis.log"
  trap 'kill "$(cat .spin/redis/redis.pid)" 2>/dev/null || true' EXIT
  for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  export SPIN_VARIABLE_REDIS_HOST="127.0.0.1:$port"
  echo "started redis-server on $SPIN_VARIABLE_REDIS_HOST (data in .spin/redis)"
fi

# Local-only secrets so the app starts out of the box; set your own for anything shared.
export SPIN_VARIABLE_ADMIN_TOKEN="${SPIN_VARIABLE_ADMIN_TOKEN:-local-admin-token}"
export SPIN_VARIABLE_INTERNAL_TOKEN="${SPIN_VARIABLE_INTERNAL_TOKEN:-local-internal-token}"
export SPIN_VARIABLE_PAYMENT_WEBHOOK_SECRET="${SPIN_VARIABLE_PAYMENT_WEBHOOK_SECRET:-local-webhook-secret}"

# Customers: without a real identity provider's JWKS, a development ES256 key pair (created once
# under .spin/dev-jwt/, private to you) signs the tokens `./scripts/token.sh <user_id>` prints.
if [[ -z "${SPIN_VARIABLE_AUTH_JWKS:-}" ]]; then
  cargo build --release -q -p devtools
  SPIN_VARIABLE_AUTH_JWKS=$(./target/release/spin-shop-dev keygen .spin/dev-jwt)
  export SPIN_VARIABLE_AUTH_JWKS
  echo "customer tokens: ./scripts/token.sh <user_id> (development key in .spin/dev-jwt)"
fi

cargo build --release -p spin-host
./target/release/spin-host up --build --from spin.toml --runtime-config-file runtime-config.toml "$@"

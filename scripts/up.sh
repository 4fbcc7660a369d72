#!/usr/bin/env bash
# Runs the whole app locally on embedded defaults: SQLite files under .spin/, and a local
# redis-server on a free loopback port unless SPIN_VARIABLE_REDIS_HOST points at one already.
#
#   ./scripts/up.sh [--spin] [--listen ADDR] [--runtime-config-file FILE] [--state-dir DIR]
#                   [--no-build]
#
# The app is two Spin apps of this directory (docs/deploy.md): the HTTP app (spin.toml, with the
# compensator's cron) and its receivers (spin.receivers.toml, Redis-triggered).
#   default  our host runs both in one process:
#            spin-host up --from spin.toml --from spin.receivers.toml
#   --spin   the real Spin CLI (SPIN_BIN, else `spin` on the PATH, else ../shared/spin/install.sh)
#            runs them as two `spin up`, the receivers under scripts/supervise.sh, which starts
#            them again whenever they exit (Spin's Redis trigger exits when Redis goes away).
#            This is the `spin up` recipe of docs/deploy.md; tests/tests/spin.rs runs it.
# --listen (default 127.0.0.1:3000), --runtime-config-file (default runtime-config.toml) and
# --state-dir go to both apps; --no-build uses the built .wasm files as they are.
set -euo pipefail
cd "$(dirname "$0")/.."

spin=false build=true listen=127.0.0.1:3000 runtime_config=runtime-config.toml state=()
while (($#)); do
  case $1 in
    --spin) spin=true ;;
    --no-build) build=false ;;
    --listen) listen=${2:?--listen needs an address}; shift ;;
    --runtime-config-file) runtime_config=${2:?--runtime-config-file needs a file}; shift ;;
    --state-dir) state=(--state-dir "${2:?--state-dir needs a directory}"); shift ;;
    *) echo "up.sh: unknown argument $1 (see the usage at the top of scripts/up.sh)" >&2; exit 2 ;;
  esac
  shift
done

mkdir -p .spin
./scripts/setup.sh app

# What this script started, stopped when it exits, also on SIGTERM or Ctrl+C.
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
# Runs an app in the background and waits for it, so that a signal reaches the traps at once.
run() {
  "$@" &
  pids+=("$!")
  wait "$!"
}

if [[ -z "${SPIN_VARIABLE_REDIS_HOST:-}" ]]; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  mkdir -p .spin/redis
  redis-server --bind 127.0.0.1 --port "$port" --dir .spin/redis --save 60 1 --appendonly yes \
    --daemonize yes --pidfile "$PWD/.spin/redis/redis.pid" --logfile "$PWD/.spin/redis/redis.log"
  for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  pids+=("$(cat .spin/redis/redis.pid)")
  export SPIN_VARIABLE_REDIS_HOST="127.0.0.1:$port"
  echo "started redis-server on $SPIN_VARIABLE_REDIS_HOST (data in .spin/redis)"
fi

# Local-only secrets so the app starts out of the box; set your own for anything shared.
export SPIN_VARIABLE_ADMIN_TOKEN="${SPIN_VARIABLE_ADMIN_TOKEN:-local-admin-token}"
export SPIN_VARIABLE_INTERNAL_TOKEN="${SPIN_VARIABLE_INTERNAL_TOKEN:-local-internal-token}"
export SPIN_VARIABLE_PAYMENT_WEBHOOK_SECRET="${SPIN_VARIABLE_PAYMENT_WEBHOOK_SECRET:-local-webhook-secret}"
# The provider's secret key for refunds (Stripe: sk_test_... for a test account).
export SPIN_VARIABLE_PAYMENT_SECRET_KEY="${SPIN_VARIABLE_PAYMENT_SECRET_KEY:-sk_test_local}"

# Customers: without a real identity provider's JWKS, a development ES256 key pair (created once
# under .spin/dev-jwt/, private to you) signs the tokens `./scripts/token.sh <user_id>` prints.
if [[ -z "${SPIN_VARIABLE_AUTH_JWKS:-}" ]]; then
  cargo build --release -q -p devtools
  SPIN_VARIABLE_AUTH_JWKS=$(./target/release/spin-shop-dev keygen .spin/dev-jwt)
  export SPIN_VARIABLE_AUTH_JWKS
  echo "customer tokens: ./scripts/token.sh <user_id> (development key in .spin/dev-jwt)"
fi

both=(--runtime-config-file "$runtime_config" "${state[@]}")

# Refused at start-up: a changed order_shards would strand the orders whose customers now hash to
# another shard, until `spin-shop-dev reshard` has moved them (docs/deploy.md). The app refuses
# such a shard on every request too; this says it before anything starts. The default is
# spin.toml's. (--no-build: the built spin-shop-dev as it is; scripts/test.sh builds it.)
order_shards=${SPIN_VARIABLE_ORDER_SHARDS:-$(sed -n 's/^order_shards = { default = "\([0-9]*\)" }$/\1/p' spin.toml)}
if $build || [[ ! -x target/release/spin-shop-dev ]]; then cargo build --release -q -p devtools; fi
if ! ./target/release/spin-shop-dev shards check --shards "$order_shards" \
    --runtime-config-file "$runtime_config"; then
  echo "up.sh: not starting: order_shards=$order_shards does not match the order shards (above)" >&2
  exit 1
fi

if ! $spin; then
  cargo build --release -p spin-host
  flags=()
  if $build; then flags=(--build); fi
  run ./target/release/spin-host up "${flags[@]}" --from spin.toml --from spin.receivers.toml \
    --listen "$listen" "${both[@]}"
  exit
fi

if [[ -n "${SPIN_BIN:-}" ]]; then
  spin_cli=$SPIN_BIN
elif command -v spin >/dev/null; then
  spin_cli=$(command -v spin)
elif [[ -x ../shared/spin/install.sh ]]; then
  spin_cli=$(../shared/spin/install.sh | tail -n 1)
else
  echo "up.sh --spin: no Spin CLI: set SPIN_BIN or put \`spin\` (4.x, with the trigger-cron plugin) on the PATH" >&2
  exit 1
fi
if $build; then "$spin_cli" build -f spin.toml; fi
# The receivers: no HTTP trigger, so no --listen; supervised, as they exit with Redis.
./scripts/supervise.sh "$spin_cli" up -f spin.receivers.toml "${both[@]}" &
pids+=("$!")
# The HTTP app: if it exits, everything stops (nothing restarts it silently).
run "$spin_cli" up -f spin.toml --listen "$listen" "${both[@]}"

#!/usr/bin/env bash
# Prints a customer token for a user id (ES256, or RS256 with SPIN_SHOP_DEV_ALG=RS256; valid one
# hour unless a TTL in seconds is given),
# signed with the development key ./scripts/up.sh uses (.spin/dev-jwt/, created if missing).
# Issuer and audience follow SPIN_VARIABLE_AUTH_ISSUER / SPIN_VARIABLE_AUTH_AUDIENCE like the app.
#   curl -H "authorization: Bearer $(./scripts/token.sh u1)" 'localhost:3000/api/orders'
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $# -lt 1 ]]; then
  echo "usage: $0 <user_id> [ttl_seconds]" >&2
  exit 2
fi
cargo build --release -q -p devtools
[[ -f .spin/dev-jwt/es256.pem && -f .spin/dev-jwt/rs256.pem ]] || ./target/release/spin-shop-dev keygen .spin/dev-jwt >/dev/null
exec ./target/release/spin-shop-dev token .spin/dev-jwt "$@"

#!/usr/bin/env bash
# Sends a signed payment webhook to the local app, like `stripe trigger`: a Stripe-shaped
# `payment_intent.succeeded` (or, with --fail, `payment_intent.payment_failed`) event for an order,
# signed with the webhook secret as the provider would (HMAC-SHA256 of "<t>.<body>").
#
#   scripts/pay.sh <order_id> <amount> <currency> [--fail] [--event-id ID] [--url URL]
#
# amount is in minor units (1299 = 12.99). The secret is $SPIN_VARIABLE_PAYMENT_WEBHOOK_SECRET,
# by default the one scripts/up.sh starts the app with. Prints the HTTP status and the answer;
# exits non-zero unless it is 2xx. Sending the same --event-id twice shows the duplicate answer.
set -euo pipefail

usage() {
  sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

[[ $# -ge 3 ]] || usage
order_id=$1 amount=$2 currency=$3
shift 3
type=payment_intent.succeeded
event_id=""
url=http://127.0.0.1:3000
while [[ $# -gt 0 ]]; do
  case $1 in
    --fail) type=payment_intent.payment_failed; shift ;;
    --event-id) event_id=${2:?--event-id needs a value}; shift 2 ;;
    --url) url=${2:?--url needs a value}; shift 2 ;;
    *) usage ;;
  esac
done
[[ $amount =~ ^[0-9]+$ ]] || { echo "amount must be an integer of minor units" >&2; exit 2; }

export PAY_ORDER_ID=$order_id PAY_AMOUNT=$amount PAY_CURRENCY=$currency PAY_TYPE=$type \
  PAY_EVENT_ID=$event_id \
  PAY_SECRET=${SPIN_VARIABLE_PAYMENT_WEBHOOK_SECRET:-local-webhook-secret}
body_file=$(mktemp)
trap 'rm -f "$body_file"' EXIT
# Python builds the body and signs exactly the bytes curl then sends (the file), so no shell
# quoting can change what was signed. Prints the header value.
signature=$(python3 - "$body_file" <<'PY'
import hashlib, hmac, json, os, secrets, sys, time

env = os.environ
failed = env["PAY_TYPE"] == "payment_intent.payment_failed"
intent = {
    "id": "pi_" + secrets.token_hex(12),
    "object": "payment_intent",
    "amount": int(env["PAY_AMOUNT"]),
    "currency": env["PAY_CURRENCY"].lower(),
    "status": "requires_payment_method" if failed else "succeeded",
    "metadata": {"order_id": env["PAY_ORDER_ID"]},
}
if failed:
    intent["last_payment_error"] = {"code": "card_declined", "message": "Your card was declined."}
now = int(time.time())
event = {
    "id": env["PAY_EVENT_ID"] or "evt_" + secrets.token_hex(12),
    "object": "event",
    "type": env["PAY_TYPE"],
    "created": now,
    "data": {"object": intent},
}
body = json.dumps(event, separators=(",", ":")).encode()
with open(sys.argv[1], "wb") as f:
    f.write(body)
mac = hmac.new(env["PAY_SECRET"].encode(), f"{now}.".encode() + body, hashlib.sha256)
print(f"t={now},v1={mac.hexdigest()}")
PY
)

echo "POST $url/api/payments/webhook ($type, $(wc -c <"$body_file") bytes)" >&2
answer_file=$(mktemp)
trap 'rm -f "$body_file" "$answer_file"' EXIT
status=$(curl -sS -o "$answer_file" -w '%{http_code}' -X POST "$url/api/payments/webhook" \
  -H 'content-type: application/json' -H "stripe-signature: $signature" \
  --data-binary "@$body_file")
echo "HTTP $status"
cat "$answer_file"
echo
[[ $status == 2* ]]

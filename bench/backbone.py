"""The event backbone under load; driven by scripts/bench-backbone.sh (which starts the app).

Prints, from one run: order creation rate at 16 connections, the relay's drain rate over the
same rows (and its ratio to the creation rate), and the commit -> effect lag of payments
(webhook's outbox commit -> order PAID by the order-events receiver), p50/p99.
"""

import glob
import hashlib
import hmac
import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime

BASE, STATE, RPORT = sys.argv[1], sys.argv[2], sys.argv[3]
ADMIN = {"authorization": "Bearer bench"}  # bench-lib.sh sets the admin and internal tokens to "bench"
INTERNAL = ADMIN
SECRET = b"bench"
CONNS = int(os.environ.get("CONNS", "16"))
SECS = int(os.environ.get("SECS", "8"))
PAYMENTS = int(os.environ.get("PAYMENTS", "400"))


def call(method, path, body=None, headers=None):
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def db(label):
    return sqlite3.connect(f"{STATE}/{label}.db", timeout=30)


def order_shards():
    """Every order shard's database (orders-shard0.db ... in the state dir)."""
    return [sqlite3.connect(f, timeout=30) for f in sorted(glob.glob(f"{STATE}/orders-shard*.db"))]


def in_shards(sql, params=()):
    """The sum of a COUNT(*) query over every order shard."""
    return sum(c.execute(sql, params).fetchone()[0] for c in order_shards())


def ms(rfc3339):
    return int(datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp() * 1000)


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def create_phase():
    call("PUT", "/api/products/BENCH-1", {"name": "Bench", "price": 100, "currency": "EUR",
                                          "stock": 100_000_000}, ADMIN)
    out = subprocess.run(["wrk", "-t1", f"-c{CONNS}", f"-d{SECS}s", "--latency", "-s",
                          "bench/create_order.lua", BASE], capture_output=True, text=True).stdout
    time.sleep(1)  # requests still in flight when wrk stopped finish (and send) first
    orders = in_shards("SELECT COUNT(*) FROM orders")
    rate = orders / SECS
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)
    print(f"create: {orders} orders in {SECS} s at {CONNS} connections = {rate:.0f} orders/s "
          f"(p50 {p50}, p99 {p99})")
    return rate


def relay_phase(create_rate):
    n = 0
    for conn in order_shards():
        n += conn.execute("UPDATE outbox SET published_at = NULL, next_attempt_ms = 0, "
                          "lease_token = NULL, lease_until_ms = NULL").rowcount
        conn.commit()
    subprocess.run(["redis-cli", "-p", RPORT, "DEL", "events:orders"], capture_output=True)
    # Forget which ids the fast path sent, or the relay would (rightly) stamp them unsent.
    subprocess.run(["redis-cli", "-p", RPORT, "EVAL",
                    "for _, k in ipairs(redis.call('KEYS', 'outbox:sent:*')) do "
                    "redis.call('DEL', k) end return 0", "0"], capture_output=True)
    t0 = time.monotonic()
    runs = 0
    while True:
        runs += 1
        status, _ = call("POST", "/api/compensator/run", b"", INTERNAL)
        assert status == 200, status
        left = in_shards("SELECT COUNT(*) FROM outbox WHERE published_at IS NULL")
        if left == 0:
            break
    secs = time.monotonic() - t0
    xlen = subprocess.run(["redis-cli", "-p", RPORT, "XLEN", "events:orders"],
                          capture_output=True, text=True).stdout.strip()
    rate = n / secs
    print(f"relay: {n} rows in {secs:.2f} s over {runs} run(s) = {rate:.0f} rows/s "
          f"(stream got {xlen}); relay / create = {rate / create_rate:.1f}x")


def sign(body):
    t = int(time.time())
    mac = hmac.new(SECRET, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def lag_phase():
    created = []
    for i in range(PAYMENTS):
        status, o = call("POST", "/api/orders",
                         {"user_id": "bench-user", "items": [{"sku": "BENCH-1", "quantity": 1}]},
                         {"idempotency-key": f"lag-{time.time_ns()}-{i}",
                          # bench-lib.sh signs it with a throwaway development key.
                          "authorization": f"Bearer {os.environ['BENCH_TOKEN']}"})
        assert status == 201, (status, o)
        created.append(o)
    queue = list(enumerate(created))
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                if not queue:
                    return
                i, o = queue.pop()
            event = {"id": f"evt_lag_{i}_{time.time_ns()}", "type": "payment_intent.succeeded",
                     "created": int(time.time()),
                     "data": {"object": {"id": f"pi_{o['order_id']}", "object": "payment_intent",
                                         "amount": o["total"], "currency": "eur",
                                         "metadata": {"order_id": o["order_id"]}}}}
            body = json.dumps(event).encode()
            status, _ = call("POST", "/api/payments/webhook", body, {"stripe-signature": sign(body)})
            assert status == 200, status

    threads = [threading.Thread(target=worker) for _ in range(CONNS)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    deadline = time.monotonic() + 120
    ids = [o["order_id"] for o in created]
    marks = ",".join("?" * len(ids))
    while in_shards(f"SELECT COUNT(*) FROM orders WHERE status = 'PAID' AND order_id IN ({marks})",
                    ids) < PAYMENTS:
        assert time.monotonic() < deadline, "payments not all applied within 120 s"
        time.sleep(0.05)
    secs = time.monotonic() - t0
    committed = {row[0]: ms(row[1]) for row in db("payments").execute(
        "SELECT aggregate_id, created_at FROM outbox WHERE type = 'PaymentSucceeded'")}
    paid = [row for c in order_shards() for row in c.execute(
        f"SELECT order_id, paid_ms FROM orders WHERE order_id IN ({marks})", ids)]
    lags = [ms_paid - committed[oid] for oid, ms_paid in paid if oid in committed]
    print(f"lag: {len(lags)} payments at {CONNS} connections in {secs:.2f} s "
          f"({len(lags) / secs:.0f}/s); webhook commit -> order PAID p50 {pct(lags, 50)} ms, "
          f"p99 {pct(lags, 99)} ms, max {max(lags)} ms")


if __name__ == "__main__":
    rate = create_phase()
    relay_phase(rate)
    lag_phase()

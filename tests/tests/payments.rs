//! Payments end to end: the signed webhook, the event backbone (outbox -> Redis stream ->
//! receiver with an inbox) and its effects on orders and stock, with real Redis and SQLite and
//! faults injected for real (a receiver that is not deployed, a Redis that refuses the app).

use std::time::Duration;

use e2e::{
    admin_auth, assert_problem, stock_lua, stripe_event, stripe_signature, unix_now, wait_for,
    Shop, WEBHOOK_SECRET,
};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

/// A product with `stock` units at 1299 EUR and one order of `qty`; returns the order body.
fn order(shop: &Shop, sku: &str, stock: i64, qty: i64, key: &str) -> Value {
    let resp = shop.put_product(
        sku,
        &json!({"name": "Mug", "price": 1299, "currency": "EUR", "stock": stock}),
    );
    assert!(resp.status == 200 || resp.status == 201, "{}", resp.text());
    shop.create_order(key, sku, qty)
}

fn succeeded(event_id: &str, order: &Value) -> Value {
    stripe_event(
        event_id,
        "payment_intent.succeeded",
        order["order_id"].as_str().unwrap(),
        order["total"].as_i64().unwrap(),
        "eur",
    )
}

/// Rows in `table` of the payments database; 0 when the table does not exist yet (nothing was
/// ever stored, so the migrations never ran).
fn stored(shop: &Shop, table: &str) -> i64 {
    let exists = shop.sql_in(
        "payments",
        &format!(
            "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = '{table}'"
        ),
    );
    if exists[0]["n"] == 0 {
        return 0;
    }
    let rows = shop.sql_in("payments", &format!("SELECT COUNT(*) AS n FROM {table}"));
    rows[0]["n"].as_i64().unwrap()
}

fn is_status(s: &'static str) -> impl Fn(&Value) -> bool {
    move |o| o["status"] == s
}

#[test]
fn create_pay_paid_with_stock_sold_and_duplicates_change_nothing() {
    let shop = Shop::boot_without_cron();
    let o = order(&shop, "PAY-1", 5, 2, "pay-1");
    let id = o["order_id"].as_str().unwrap();
    let event = succeeded("evt_1", &o);
    for _ in 0..3 {
        let resp = shop.webhook(&event);
        assert_eq!(resp.status, 200, "{}", resp.text());
        assert_eq!(resp.json()["received"], true);
    }
    let paid = shop.wait_order(id, WAIT, is_status("PAID"));
    assert_eq!(paid["version"], 2, "{paid}");
    assert_eq!(shop.wait_levels("PAY-1", WAIT, |l| l.2 == 2), (3, 0, 2));
    // One payment, one OrderPaid, however often the provider delivered the event.
    assert_eq!(
        shop.sql_in("payments", "SELECT COUNT(*) AS n FROM inbox")[0]["n"],
        1
    );
    let paid_msgs = shop.sql("SELECT COUNT(*) AS n FROM outbox WHERE type = 'OrderPaid'");
    assert_eq!(paid_msgs[0]["n"], 1);
    assert_eq!(
        shop.sql("SELECT COUNT(*) AS n FROM outbox WHERE type = 'RefundRequired'")[0]["n"],
        0
    );
}

#[test]
fn forged_stale_and_unsigned_webhooks_are_400_and_store_nothing() {
    let shop = Shop::boot_with(|b| b.variable("payment_webhook_secret_previous", "old-secret"));
    let o = order(&shop, "PAY-2", 5, 1, "pay-2");
    let body = serde_json::to_vec(&succeeded("evt_forged", &o)).unwrap();
    let forged = stripe_signature("not-the-secret", unix_now(), &body);
    assert_problem(
        &shop.webhook_raw(&body, Some(&forged)),
        400,
        Some("Stripe-Signature"),
    );
    let stale = stripe_signature(WEBHOOK_SECRET, unix_now() - 301, &body);
    assert_problem(
        &shop.webhook_raw(&body, Some(&stale)),
        400,
        Some("Stripe-Signature"),
    );
    assert_problem(
        &shop.webhook_raw(&body, None),
        400,
        Some("Stripe-Signature"),
    );
    let mut tampered = body.clone();
    tampered.extend_from_slice(b" ");
    let sig = stripe_signature(WEBHOOK_SECRET, unix_now(), &body);
    assert_problem(
        &shop.webhook_raw(&tampered, Some(&sig)),
        400,
        Some("Stripe-Signature"),
    );
    let junk = b"not json";
    let sig = stripe_signature(WEBHOOK_SECRET, unix_now(), junk);
    assert_eq!(shop.webhook_raw(junk, Some(&sig)).status, 400);
    assert_eq!(stored(&shop, "inbox"), 0);
    assert_eq!(stored(&shop, "outbox"), 0);

    // During a rotation the previous secret still verifies.
    let rotated = stripe_signature("old-secret", unix_now(), &body);
    let resp = shop.webhook_raw(&body, Some(&rotated));
    assert_eq!(resp.status, 200, "{}", resp.text());
    shop.wait_order(o["order_id"].as_str().unwrap(), WAIT, is_status("PAID"));
}

#[test]
fn a_payment_that_does_not_match_leaves_the_order_and_requires_a_refund() {
    let shop = Shop::boot_without_cron();
    let o = order(&shop, "PAY-3", 5, 1, "pay-3");
    let id = o["order_id"].as_str().unwrap();
    // Another payment intent for too little (the customer's own intent pays in full below).
    let mut short = stripe_event("evt_short", "payment_intent.succeeded", id, 1, "eur");
    short["data"]["object"]["id"] = json!("pi_short");
    assert_eq!(shop.webhook(&short).status, 200);
    let unknown = stripe_event(
        "evt_unknown",
        "payment_intent.succeeded",
        "ord_nope",
        1299,
        "eur",
    );
    assert_eq!(shop.webhook(&unknown).status, 200);
    let failed = stripe_event(
        "evt_failed",
        "payment_intent.payment_failed",
        id,
        1299,
        "eur",
    );
    assert_eq!(shop.webhook(&failed).status, 200);
    let deadline = std::time::Instant::now() + WAIT;
    let reasons = loop {
        let rows = shop.sql(
            "SELECT json_extract(payload, '$.reason') AS reason FROM outbox
             WHERE type = 'RefundRequired' ORDER BY reason",
        );
        if rows.len() == 2 || std::time::Instant::now() > deadline {
            break rows;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        reasons,
        vec![
            json!({"reason": "amount-mismatch"}),
            json!({"reason": "unknown-order"})
        ]
    );
    // Still payable after a failed attempt and a wrong amount.
    let now = shop.get_order(id).json();
    assert_eq!(now["status"], "PENDING_PAYMENT", "{now}");
    assert_eq!(shop.webhook(&succeeded("evt_ok", &o)).status, 200);
    shop.wait_order(id, WAIT, is_status("PAID"));
}

#[test]
fn unpaid_orders_expire_return_their_stock_and_a_late_payment_is_refunded() {
    let shop = Shop::boot_without_cron();
    let o = order(&shop, "PAY-4", 5, 3, "pay-4");
    let id = o["order_id"].as_str().unwrap();
    assert_eq!(shop.levels("PAY-4"), (2, 3, 0));
    // The payment deadline passes (the order's copy of the reservation's expiry).
    shop.sql(&format!(
        "UPDATE orders SET expires_ms = 0 WHERE order_id = '{id}'"
    ));
    shop.compensator_run(); // rings the doorbells: the order sweep runs
    shop.wait_order(id, WAIT, is_status("EXPIRED"));
    assert_eq!(shop.wait_levels("PAY-4", WAIT, |l| l.1 == 0), (5, 0, 0));
    // A payment after the expiry: the order stays EXPIRED, the money must go back.
    assert_eq!(shop.webhook(&succeeded("evt_late", &o)).status, 200);
    let deadline = std::time::Instant::now() + WAIT;
    while shop
        .sql("SELECT 1 FROM outbox WHERE type = 'RefundRequired'")
        .is_empty()
    {
        assert!(std::time::Instant::now() < deadline, "no RefundRequired");
        std::thread::sleep(Duration::from_millis(50));
    }
    let reason = shop.sql(
        "SELECT json_extract(payload, '$.reason') AS r FROM outbox WHERE type = 'RefundRequired'",
    );
    assert_eq!(reason[0]["r"], "order-expired");
    let after = shop.get_order(id).json();
    assert_eq!(after["status"], "EXPIRED");
    assert_eq!(shop.levels("PAY-4"), (5, 0, 0));
}

/// The Redis server refuses the app (a password it does not know) until `restore`.
struct RedisRefusing<'a>(&'a Shop);

impl<'a> RedisRefusing<'a> {
    fn start(shop: &'a Shop) -> Self {
        // A password the app does not know, then its open connections dropped (they stay
        // authenticated otherwise): every new command of the app fails until `drop`. The
        // receivers' pub/sub connections stay (the Redis trigger's reconnects have host tests).
        shop.redis
            .cli(&["CONFIG", "SET", "requirepass", "e2e-down"])
            .expect("CONFIG SET");
        let port = shop.redis.port().to_string();
        std::process::Command::new("redis-cli")
            .args(["-p", &port, "-a", "e2e-down", "--no-auth-warning"])
            .args(["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"])
            .output()
            .expect("redis-cli CLIENT KILL");
        RedisRefusing(shop)
    }
}

impl Drop for RedisRefusing<'_> {
    fn drop(&mut self) {
        let port = self.0.redis.port().to_string();
        let status = std::process::Command::new("redis-cli")
            .args([
                "-p",
                &port,
                "-a",
                "e2e-down",
                "--no-auth-warning",
                "CONFIG",
                "SET",
                "requirepass",
                "",
            ])
            .status()
            .expect("redis-cli");
        assert!(status.success());
    }
}

#[test]
fn redis_down_during_the_webhook_still_answers_200_and_the_relay_delivers_later() {
    let mut shop = Shop::boot_without_cron();
    let o = order(&shop, "PAY-5", 5, 1, "pay-5");
    let id = o["order_id"].as_str().unwrap().to_owned();
    shop.redis.stop_saving().expect("stop redis-server");
    let resp = shop.webhook(&succeeded("evt_down", &o));
    assert_eq!(resp.status, 200, "{}", resp.text());
    let unsent = shop.sql_in("payments", "SELECT published_at FROM outbox");
    assert_eq!(unsent, vec![json!({"published_at": null})]);
    shop.redis.restart().expect("restart redis-server");
    // The relay leaves a fresh row to its request's fast path for 5 s, then sends it: run it
    // until it has (a deadline wait on the relay's own report, not a sleep past the grace).
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let report = shop.compensator_run();
        if report["relayed"].to_string().contains("\"sent\":1") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the relay never sent the row: {report}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // The receivers' subscriptions reconnect with backoff after the outage; like the cron, keep
    // ringing until the order-events receiver has drained the message.
    let deadline = std::time::Instant::now() + WAIT;
    while shop.get_order(&id).json()["status"] != "PAID" {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            shop.app.stderr()
        );
        std::thread::sleep(Duration::from_millis(500));
        shop.compensator_run();
    }
    shop.wait_levels("PAY-5", WAIT, |l| l == (4, 0, 1));
}

#[test]
fn two_overlapping_relay_runs_send_each_message_once() {
    let shop = Shop::boot_without_cron();
    shop.put_product(
        "PAY-6",
        &json!({"name": "Mug", "price": 100, "currency": "EUR", "stock": 100}),
    );
    // 40 orders, then as if every fast path had failed: all 40 due for the relay at once.
    for i in 0..40 {
        shop.create_order(&format!("ovl-{i}"), "PAY-6", 1);
    }
    shop.sql("UPDATE outbox SET published_at = NULL, next_attempt_ms = 0");
    shop.redis.cli(&["DEL", "events:orders"]).unwrap();
    shop.forget_sent_messages();
    // Forced overlap: Redis holds writes back, so the run that claims first stops right after
    // its claim (its first Redis write is the send) with its rows leased and unsent, and stays
    // there while the other run, started at the same moment, claims. (Under our host both runs
    // share one Redis connection, so the second run, once past its claim, queues behind the
    // first instead of showing up as a second blocked client: it gets a second to claim.)
    shop.pause_redis_writes();
    let barrier = std::sync::Barrier::new(2);
    let runs: Vec<Value> = std::thread::scope(|s| {
        let run = || {
            barrier.wait();
            shop.compensator_run()
        };
        let (a, b) = (s.spawn(run), s.spawn(run));
        e2e::wait_for(WAIT, "a run claimed and waits to send", || {
            (shop.redis_blocked_clients() >= 1).then_some(())
        });
        let leased = "SELECT COUNT(*) AS n FROM outbox WHERE lease_token IS NOT NULL AND published_at IS NULL";
        assert_eq!(shop.sql(leased)[0]["n"], 40, "claimed, not sent");
        std::thread::sleep(Duration::from_secs(1));
        shop.unpause_redis();
        vec![a.join().unwrap(), b.join().unwrap()]
    });
    let total = |field: &str| -> u64 {
        runs.iter()
            .flat_map(|r| r["relayed"].as_array().cloned().unwrap_or_default())
            .map(|pair| pair[1][field].as_u64().unwrap_or(0))
            .sum()
    };
    // The relay lease, not publish.lua's memory of sent ids, keeps the runs apart: each row was
    // claimed by one run only.
    assert_eq!(total("claimed"), 40, "{runs:?}");
    assert_eq!(total("sent"), 40, "{runs:?}");
    assert_eq!(
        shop.redis.cli(&["XLEN", "events:orders"]).unwrap().trim(),
        "40"
    );
    assert_eq!(
        shop.sql("SELECT COUNT(*) AS n FROM outbox WHERE published_at IS NULL")[0]["n"],
        0
    );
}

#[test]
fn ops_routes_show_the_outbox_and_replay_dead_letters() {
    let shop = Shop::boot_without_cron();
    let o = order(&shop, "PAY-7", 5, 1, "pay-7");
    let (k, v) = admin_auth();
    assert_eq!(shop.app.get("/api/ops/outbox").unwrap().status, 401);
    let stats = shop
        .app
        .send("GET", "/api/ops/outbox", &[(k, &v)], None)
        .unwrap();
    assert_eq!(stats.status, 200, "{}", stats.text());
    // Sent on the fast path, stamped by the relay only after its grace: pending until then.
    assert_eq!(
        stats.json()["contexts"]["orders"]["pending"],
        1,
        "{}",
        stats.text()
    );
    // A row that failed too often waits as a dead letter until an operator replays it.
    let mid = shop.sql("SELECT message_id FROM outbox")[0]["message_id"]
        .as_str()
        .unwrap()
        .to_owned();
    shop.sql(&format!(
        "UPDATE outbox SET published_at = NULL, dead_at = '2026-01-01T00:00:00.000Z', attempts = 10, last_error = 'x' WHERE message_id = '{mid}'"
    ));
    let dead = shop
        .app
        .send("GET", "/api/ops/dead-letters", &[(k, &v)], None)
        .unwrap()
        .json();
    assert_eq!(
        dead["dead_letters"][0]["message_id"],
        mid.as_str(),
        "{dead}"
    );
    // The order's shard (u1's) is the one with the dead row: the relay skips it there.
    let shard = e2e::shard_label(shop.shard_of("u1"));
    assert_eq!(e2e::relayed(&shop.compensator_run(), &shard)["sent"], 0);
    let path = format!("/api/ops/dead-letters/{mid}/replay");
    assert_eq!(
        shop.app
            .send("POST", &path, &[(k, &v)], None)
            .unwrap()
            .status,
        200
    );
    assert_eq!(
        shop.app
            .send("POST", &path, &[(k, &v)], None)
            .unwrap()
            .status,
        404
    );
    assert_eq!(e2e::relayed(&shop.compensator_run(), &shard)["sent"], 1);
    let _ = o;
}

#[test]
fn a_payment_sent_while_the_receiver_is_down_is_applied_once_it_is_back() {
    let mut shop = Shop::boot_without_receivers();
    let o = order(&shop, "PAY-8", 5, 2, "pay-8");
    let id = o["order_id"].as_str().unwrap().to_owned();
    assert_eq!(
        shop.webhook(&succeeded("evt_down_receiver", &o)).status,
        200
    );
    // Sent (the stream has it), but nobody applied it.
    assert_eq!(
        shop.redis.cli(&["XLEN", "events:payments"]).unwrap().trim(),
        "1"
    );
    // The receivers' app is not running, so nothing can have applied it: no wait needed.
    let now = shop.get_order(&id).json();
    assert_eq!(now["status"], "PENDING_PAYMENT", "{now}");

    shop.restart_without_cron();
    shop.compensator_run(); // rings the doorbells: the receiver drains what waited
    shop.wait_order(&id, WAIT, is_status("PAID"));
    assert_eq!(shop.wait_levels("PAY-8", WAIT, |l| l.2 == 2), (3, 0, 2));
}

#[test]
fn a_relay_run_killed_mid_batch_loses_nothing_and_doubles_nothing() {
    let shop = Shop::boot_without_cron();
    let orders: Vec<Value> = (0..6)
        .map(|i| order(&shop, &format!("KILL-{i}"), 3, 1, &format!("kill-{i}")))
        .collect();
    {
        let _down = RedisRefusing::start(&shop);
        for (i, o) in orders.iter().enumerate() {
            assert_eq!(
                shop.webhook(&succeeded(&format!("evt_kill_{i}"), o)).status,
                200
            );
        }
    }
    let payments = |q: &str| shop.sql_in("payments", q);
    assert_eq!(
        payments("SELECT COUNT(*) AS n FROM outbox WHERE published_at IS NULL")[0]["n"],
        6
    );
    // A run claimed all six, sent the first three, and died before stamping anything: first let
    // a run send three (the other three held by a live lease), then take the stamps back and
    // hand all six to the dead run's lease, which has just run out.
    payments("UPDATE outbox SET next_attempt_ms = 0");
    payments(
        "UPDATE outbox SET lease_token = 'lease_other', lease_until_ms = 9999999999999
         WHERE rowid IN (SELECT rowid FROM outbox ORDER BY rowid DESC LIMIT 3)",
    );
    let report = shop.compensator_run();
    assert!(
        report["relayed"].to_string().contains("\"sent\":3"),
        "{report}"
    );
    payments(
        "UPDATE outbox SET published_at = NULL, lease_token = 'lease_dead', lease_until_ms = 0",
    );
    // The dead run's sends were remembered; as if that memory had expired, so the next run
    // really sends those three a second time and the receiver's inbox must drop them.
    shop.forget_sent_messages();

    shop.compensator_run();
    assert_eq!(
        payments("SELECT COUNT(*) AS n FROM outbox WHERE published_at IS NULL")[0]["n"],
        0
    );
    assert_eq!(
        shop.redis.cli(&["XLEN", "events:payments"]).unwrap().trim(),
        "9"
    );
    for o in &orders {
        let paid = shop.wait_order(o["order_id"].as_str().unwrap(), WAIT, is_status("PAID"));
        assert_eq!(paid["version"], 2, "paid once: {paid}");
    }
    // Nine deliveries, six effects: the inbox dropped the three duplicates.
    let deadline = std::time::Instant::now() + WAIT;
    while shop.sql("SELECT COUNT(*) AS n FROM inbox")[0]["n"] != 6 {
        assert!(
            std::time::Instant::now() < deadline,
            "inbox never reached 6"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        shop.sql("SELECT COUNT(*) AS n FROM outbox WHERE type = 'OrderPaid'")[0]["n"],
        6
    );
    for i in 0..6 {
        assert_eq!(
            shop.wait_levels(&format!("KILL-{i}"), WAIT, |l| l.2 == 1),
            (2, 0, 1)
        );
    }
}

#[test]
fn a_payment_accepted_just_before_the_deadline_still_confirms_its_stock() {
    let shop = Shop::boot_without_cron();
    let o = order(&shop, "PAY-9", 5, 2, "pay-9");
    let id = o["order_id"].as_str().unwrap();
    // The reservation's expiry passed a minute ago at the stock context, while the order context
    // still took the payment in time (its OrderPaid arrives late): within the grace, the units
    // are sold, not released, even when the TTL sweep runs first.
    let rkey = format!("stock:reservation:{}", shop.reservation_of(&o));
    let past = (unix_now() - 60) * 1000;
    shop.redis
        .cli(&["HSET", &rkey, "expires_at", &past.to_string()])
        .unwrap();
    // The stock receiver's sweep runs and must leave it alone. Each wake-up logs one
    // `stock-events:` line after its sweep: wait for the line of the wake-up this run rang.
    let sweeps = |log: &str| log.matches("stock-events: read").count();
    let before = sweeps(&format!("{}{}", shop.app.stdout(), shop.app.stderr()));
    shop.compensator_run();
    assert!(
        shop.app.wait_for_log(WAIT, |log| sweeps(log) > before),
        "the stock receiver did not wake up\n{}",
        shop.app.stderr()
    );
    assert_eq!(shop.levels("PAY-9"), (3, 2, 0));
    assert_eq!(shop.webhook(&succeeded("evt_grace", &o)).status, 200);
    shop.wait_order(id, WAIT, is_status("PAID"));
    assert_eq!(shop.wait_levels("PAY-9", WAIT, |l| l.2 == 2), (3, 0, 2));
}

/// A payment whose `OrderPaid` reaches stock after the reservation was released (a release
/// raced it, or it came later than the sweep's grace) still sells: the same units are taken
/// from available stock again, all or none; one that is still reserved past its expiry sells
/// the units it holds.
#[test]
fn a_paid_order_whose_reservation_was_released_sells_the_same_units_again() {
    let shop = Shop::boot_without_cron();
    let o = order(&shop, "LATE-1", 5, 2, "late-1");
    let rid = shop.release_reservation_of(&o);
    assert_eq!(shop.levels("LATE-1"), (5, 0, 0));

    assert_eq!(shop.webhook(&succeeded("evt_late_1", &o)).status, 200);
    shop.wait_order(o["order_id"].as_str().unwrap(), WAIT, is_status("PAID"));
    assert_eq!(shop.wait_levels("LATE-1", WAIT, |l| l.2 == 2), (3, 0, 2));
    let r = shop.get_reservation(&rid).json();
    assert_eq!(r["status"], "CONFIRMED", "{r}");

    // Still reserved but an hour past its expiry (past the sweep's grace, before a sweep ran):
    // the units are still held, and they are the ones sold.
    let o = order(&shop, "LATE-2", 5, 2, "late-2");
    let rkey = format!("stock:reservation:{}", shop.reservation_of(&o));
    let past = (unix_now() - 3600) * 1000;
    shop.redis
        .cli(&["HSET", &rkey, "expires_at", &past.to_string()])
        .unwrap();
    assert_eq!(shop.webhook(&succeeded("evt_late_2", &o)).status, 200);
    shop.wait_order(o["order_id"].as_str().unwrap(), WAIT, is_status("PAID"));
    assert_eq!(shop.wait_levels("LATE-2", WAIT, |l| l.2 == 2), (3, 0, 2));
    assert!(
        !shop.app.stderr().contains("ALERT"),
        "a retake is no alert\n{}",
        shop.app.stderr()
    );
}

/// When the released units are gone too, a paid order sells nothing, not even its lines that
/// are still there, and is not silent: stock logs an ALERT naming the order and the short SKU,
/// and tells the order context in the same step, which cancels the order and writes
/// `RefundRequired` (reason `out-of-stock`), once however often the message comes. The decision
/// stands: the same message delivered again after a restock still sells nothing and tells
/// nobody again.
#[test]
fn a_paid_order_whose_units_are_gone_is_cancelled_and_refunded_once_and_the_decision_stands() {
    let shop = Shop::boot_without_cron();
    for sku in ["LOST-1", "LOST-2"] {
        let body = json!({"name": "Mug", "price": 1299, "currency": "EUR", "stock": 5});
        let resp = shop.put_product(sku, &body);
        assert!(resp.status == 200 || resp.status == 201, "{}", resp.text());
    }
    let lines =
        json!({"items": [{"sku": "LOST-1", "quantity": 2}, {"sku": "LOST-2", "quantity": 2}]});
    let resp = shop.order_as("u1", "lost-1", &lines);
    assert_eq!(resp.status, 201, "{}", resp.text());
    let o = resp.json();
    let id = o["order_id"].as_str().unwrap();
    let rid = shop.release_reservation_of(&o);
    let adjust = |id: &str, delta: i64| {
        let body = json!({"adjustment_id": id, "delta": delta, "reason": "count"});
        let resp = shop.adjust_stock("LOST-2", &body);
        assert_eq!(resp.status, 201, "{}", resp.text());
    };
    adjust("lost-2-shrink", -4);

    assert_eq!(shop.webhook(&succeeded("evt_lost_1", &o)).status, 200);
    shop.wait_order(id, WAIT, is_status("PAID"));
    let alert = format!("ALERT OrderPaid for order {id}");
    let line = wait_for(WAIT, "the alert", || {
        let log = shop.app.stderr();
        log.lines().find(|l| l.contains(&alert)).map(str::to_owned)
    });
    assert!(line.contains(r#"short ["LOST-2", "1"]"#), "{line}");
    assert_eq!(shop.levels("LOST-1"), (5, 0, 0), "all lines or none");
    assert_eq!(shop.levels("LOST-2"), (1, 0, 0));

    // The order context reads the stock's messages on the periodic ring.
    shop.compensator_run();
    let cancelled = shop.wait_order(id, WAIT, is_status("CANCELLED"));
    assert_eq!(cancelled["version"], 3, "paid, then cancelled: {cancelled}");
    assert_eq!(
        cancelled["refund_reason"], "out-of-stock",
        "the order says why: {cancelled}"
    );
    let refunds = || {
        shop.sql(
            "SELECT aggregate_id AS order_id, json_extract(payload, '$.reason') AS reason, \
                    json_extract(payload, '$.amount') AS amount \
             FROM outbox WHERE type = 'RefundRequired'",
        )
    };
    let once = vec![json!({"order_id": id, "reason": "out-of-stock", "amount": o["total"]})];
    wait_for(WAIT, "the refund", || (refunds() == once).then_some(()));

    // The same message delivered twice more (the very entry again, and a copy under another
    // message id): the inbox drops the first, the order's state the second.
    let entry = shop.cli(&["XRANGE", "events:stock", "-", "+"]);
    let envelope = entry.lines().nth(2).expect("the message").to_owned();
    let copy = envelope.replace("\"message_id\":\"msg_", "\"message_id\":\"msg_copy_");
    assert_ne!(copy, envelope);
    for m in [&envelope, &copy] {
        shop.cli(&["XADD", "events:stock", "*", "m", m]);
    }
    shop.compensator_run();
    shop.wait_group_caught_up("events:stock", "order", "msg_copy_", WAIT);
    assert_eq!(refunds(), once);
    assert_eq!(shop.get_order(id).json()["version"], 3);
    let cancels = shop.sql(
        "SELECT json_extract(payload, '$.reason') AS reason FROM outbox \
         WHERE type = 'OrderCancelled'",
    );
    assert_eq!(cancels, vec![json!({"reason": "out-of-stock"})]);
    // ... and its OrderCancelled released nothing at stock (the reservation holds nothing).
    shop.wait_stock_took("OrderCancelled", id, WAIT);
    assert_eq!(shop.levels("LOST-1"), (5, 0, 0));

    // Redelivered after a restock: the shortfall recorded the first time is the answer, and
    // the order context is not told again.
    adjust("lost-2-restock", 10);
    let again = shop.cli(&[
        "EVAL",
        &stock_lua("fulfil"),
        "4",
        &format!("stock:reservation:{rid}"),
        "stock:reservations:expiries",
        "events:stock",
        "doorbell:marks:stock",
        &rid,
        "stock:product:",
        "60000",
        "600",
        "doorbell:stock",
        "2000",
        "0",
        "msg_redelivered",
        r#"{"payload":{}}"#,
    ]);
    assert!(again.starts_with("SHORT\nRELEASED"), "{again}");
    assert_eq!(shop.levels("LOST-1"), (5, 0, 0));
    assert_eq!(shop.levels("LOST-2"), (11, 0, 0));
    assert_eq!(
        shop.cli(&["XLEN", "events:stock"]).trim(),
        "3",
        "nothing new"
    );
}

/// A paid order whose reservation record is gone (30 days after it settled: an old message
/// replayed, or Redis data lost) is not taken for an unfulfilled order: stock sells nothing,
/// logs an ALERT for an operator and tells the order context nothing; the order stays PAID.
#[test]
fn a_paid_order_whose_reservation_record_is_gone_is_an_alert_only() {
    let shop = Shop::boot_without_cron();
    let gone = order(&shop, "GONE-1", 5, 1, "gone-1");
    let rid = shop.reservation_of(&gone);
    shop.cli(&["DEL", &format!("stock:reservation:{rid}")]);
    assert_eq!(shop.webhook(&succeeded("evt_gone_1", &gone)).status, 200);
    let id = gone["order_id"].as_str().unwrap();
    shop.wait_order(id, WAIT, is_status("PAID"));
    let alert = format!("ALERT OrderPaid for order {id}");
    let line = wait_for(WAIT, "the alert", || {
        let log = shop.app.stderr();
        log.lines().find(|l| l.contains(&alert)).map(str::to_owned)
    });
    assert!(line.contains("UNKNOWN"), "{line}");
    assert_eq!(shop.levels("GONE-1").2, 0, "nothing sold without a record");
    shop.compensator_run();
    shop.wait_group_caught_up("events:stock", "order", "", WAIT);
    assert_eq!(shop.get_order(id).json()["status"], "PAID");
    assert_eq!(shop.cli(&["XLEN", "events:stock"]).trim(), "0");
}

#[test]
fn retention_purges_old_delivered_messages_inbox_rows_and_finished_keys() {
    let shop = Shop::boot_without_cron();
    let o = order(&shop, "PAY-10", 5, 1, "pay-10");
    assert_eq!(shop.webhook(&succeeded("evt_old", &o)).status, 200);
    shop.wait_order(o["order_id"].as_str().unwrap(), WAIT, is_status("PAID"));
    // Age everything past its retention (7 days for outbox rows and keys, 30 for inboxes).
    // Every shard of the orders context's (`sql`), and the payments context's.
    let old_outbox = "UPDATE outbox SET published_at = '2020-01-01T00:00:00.000Z'";
    let old_inbox = "UPDATE inbox SET received_ms = 0";
    shop.sql(old_outbox);
    shop.sql(old_inbox);
    shop.sql_in("payments", old_outbox);
    shop.sql_in("payments", old_inbox);
    shop.sql("UPDATE idempotency_keys SET updated_ms = 0");
    let before = shop.sql("SELECT COUNT(*) AS n FROM outbox")[0]["n"]
        .as_i64()
        .unwrap();
    assert!(before >= 2, "OrderCreated and OrderPaid");
    let report = shop.compensator_run();
    assert!(
        report["purged_outbox"].as_i64().unwrap() >= before,
        "{report}"
    );
    assert_eq!(
        report["purged_inbox"], 2,
        "one inbox row per context: {report}"
    );
    assert_eq!(shop.sql("SELECT COUNT(*) AS n FROM outbox")[0]["n"], 0);
    assert_eq!(stored(&shop, "outbox"), 0);
    assert_eq!(stored(&shop, "inbox"), 0);
    // The order sweep (woken by the same run) forgets the finished Idempotency-Key.
    let deadline = std::time::Instant::now() + WAIT;
    while shop.sql("SELECT COUNT(*) AS n FROM idempotency_keys")[0]["n"] != 0 {
        assert!(std::time::Instant::now() < deadline, "key never purged");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The order itself stays.
    assert_eq!(shop.sql("SELECT status FROM orders")[0]["status"], "PAID");
}

#[test]
fn the_relay_and_sweep_queries_are_served_by_indexes() {
    let shop = Shop::boot_without_cron();
    order(&shop, "PAY-11", 5, 1, "pay-11");
    // The plan SQLite itself picks for the relay's and the sweep's queries (sqlite3 CLI).
    let plan = |q: &str| {
        let out = std::process::Command::new("sqlite3")
            .arg(shop.shard_file_of("u1"))
            .arg(format!("EXPLAIN QUERY PLAN {q}"))
            .output()
            .expect("sqlite3");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let relay = plan(
        "SELECT message_id FROM outbox WHERE published_at IS NULL AND dead_at IS NULL \
         AND next_attempt_ms <= 5 AND (lease_until_ms IS NULL OR lease_until_ms < 5) \
         ORDER BY next_attempt_ms, rowid LIMIT 500",
    );
    assert!(relay.contains("USING INDEX outbox_due"), "{relay}");
    let expiry = plan(
        "SELECT order_id FROM orders WHERE status = 'PENDING_PAYMENT' AND expires_ms <= 5 \
         ORDER BY expires_ms LIMIT 50",
    );
    assert!(
        expiry.contains("USING INDEX orders_payment_due"),
        "{expiry}"
    );
    let claims = plan(
        "SELECT idem_key FROM idempotency_keys WHERE state = 'in-progress' AND claimed_ms <= 5 \
         ORDER BY claimed_ms LIMIT 50",
    );
    assert!(
        claims.contains("USING INDEX idempotency_in_progress"),
        "{claims}"
    );
    let lease = plan("SELECT message_id FROM outbox WHERE lease_token = 'x' ORDER BY rowid");
    assert!(lease.contains("outbox_lease"), "{lease}");
}

/// The doorbell is coalesced (publish.lua rings only when no ring is pending; the receiver's
/// last read clears the mark atomically): a burst of payments from many threads, with no
/// compensator to ring afterwards, must still all be applied, and once they are no ring is left
/// pending (the next message would ring again).
#[test]
fn a_burst_of_payments_is_applied_without_the_compensator_and_leaves_no_ring_pending() {
    let shop = Shop::boot_without_cron();
    let n = 40;
    let first = order(&shop, "BURST-1", n, 1, "burst-0");
    let orders: Vec<Value> = std::iter::once(first)
        .chain((1..n).map(|i| shop.create_order(&format!("burst-{i}"), "BURST-1", 1)))
        .collect();
    std::thread::scope(|s| {
        for (i, o) in orders.iter().enumerate() {
            let shop = &shop;
            s.spawn(move || {
                let resp = shop.webhook(&succeeded(&format!("evt_burst_{i}"), o));
                assert_eq!(resp.status, 200, "{}", resp.text());
            });
        }
    });
    for o in &orders {
        shop.wait_order(o["order_id"].as_str().unwrap(), WAIT, is_status("PAID"));
    }
    assert_eq!(shop.wait_levels("BURST-1", WAIT, |l| l.2 == n), (0, 0, n));
    e2e::wait_for(WAIT, "the pending doorbell mark to be cleared", || {
        (shop
            .cli(&["EXISTS", "doorbell:pending:payments:order"])
            .trim()
            == "0")
            .then_some(())
    });
}

/// The order receiver applies a drained batch in one transaction, a savepoint per message: a
/// message whose effect fails (here a SQLite trigger refuses to mark one order paid) undoes
/// only itself, including its inbox row, and stays unacknowledged; the rest of the batch
/// commits.
#[test]
fn a_failing_message_in_a_batch_undoes_only_itself() {
    let mut shop = Shop::boot_without_receivers();
    let a = order(&shop, "BATCH-1", 5, 1, "batch-a");
    let b = shop.create_order("batch-b", "BATCH-1", 1);
    let a_id = a["order_id"].as_str().unwrap();
    let b_id = b["order_id"].as_str().unwrap();
    shop.sql(&format!(
        "CREATE TRIGGER e2e_refuse_paid BEFORE UPDATE OF status ON orders \
         WHEN OLD.order_id = '{a_id}' \
         BEGIN SELECT RAISE(ABORT, 'forced failure of one payment'); END"
    ));
    // Both wait in the stream (the receivers' app is not running), so one drain reads
    // them as one batch.
    assert_eq!(shop.webhook(&succeeded("evt_batch_a", &a)).status, 200);
    assert_eq!(shop.webhook(&succeeded("evt_batch_b", &b)).status, 200);
    shop.restart_without_cron();
    shop.compensator_run();
    shop.wait_order(b_id, WAIT, is_status("PAID"));
    let inbox = shop.sql("SELECT kind, COUNT(*) AS n FROM inbox GROUP BY kind");
    assert_eq!(inbox, vec![json!({"kind": "PaymentSucceeded", "n": 1})]);
    assert_eq!(shop.get_order(a_id).json()["status"], "PENDING_PAYMENT");
    let pending = shop.cli(&["XPENDING", "events:payments", "order"]);
    assert_eq!(
        pending.lines().next().map(str::trim),
        Some("1"),
        "{pending}"
    );
}

/// Where Spin's Redis trigger does not exist (Fermyon Cloud), an external scheduler calls the
/// receivers' HTTP routes instead of a doorbell waking them: the payment is applied by
/// `POST /api/orders/events/drain`, its `OrderPaid` settles the stock by
/// `POST /api/stock/events/drain`, both internal only and idempotent.
#[test]
fn the_receivers_run_over_http_where_there_is_no_redis_trigger() {
    let shop = Shop::boot_without_receivers();
    let o = order(&shop, "HTTP-1", 5, 2, "http-drain");
    let id = o["order_id"].as_str().unwrap();
    assert_eq!(shop.webhook(&succeeded("evt_http_drain", &o)).status, 200);
    // The receivers' app is not running: nothing applies the payment by itself.
    assert_eq!(shop.get_order(id).json()["status"], "PENDING_PAYMENT");

    let (admin, token) = admin_auth();
    for path in ["/api/orders/events/drain", "/api/stock/events/drain"] {
        assert_problem(&shop.app.send("POST", path, &[], None).unwrap(), 401, None);
        let as_admin = shop.app.send("POST", path, &[(admin, &token)], None);
        assert_problem(&as_admin.unwrap(), 401, None);
    }
    assert_eq!(shop.get_order(id).json()["status"], "PENDING_PAYMENT");

    let orders = shop.post_internal("/api/orders/events/drain");
    assert_eq!(orders.status, 200, "{}", orders.text());
    assert_eq!(orders.json()["applied"], 1, "{}", orders.text());
    assert_eq!(shop.get_order(id).json()["status"], "PAID");
    assert_eq!(
        shop.levels("HTTP-1"),
        (3, 2, 0),
        "the stock receiver has not run yet"
    );

    let stock = shop.post_internal("/api/stock/events/drain");
    assert_eq!(stock.status, 200, "{}", stock.text());
    assert_eq!(
        shop.levels("HTTP-1"),
        (3, 0, 2),
        "OrderPaid confirmed the reservation"
    );

    // Again: nothing left, nothing changes.
    let again = shop.post_internal("/api/orders/events/drain").json();
    assert_eq!(
        (again["read"].as_i64(), again["applied"].as_i64()),
        (Some(0), Some(0))
    );
    assert_eq!(shop.post_internal("/api/stock/events/drain").status, 200);
    assert_eq!(shop.levels("HTTP-1"), (3, 0, 2));
}

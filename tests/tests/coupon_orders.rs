//! Orders with a coupon end to end (the real order, stock and coupon components): the order
//! tries the coupon under its own id, prices the discount in, and a refusal or an unreachable
//! coupon context leaves no reservation behind. docs/coupons.md.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use e2e::{assert_problem, Shop};
use serde_json::{json, Value};

/// A product `sku` at `price` minor units of EUR with `stock` units.
fn product(shop: &Shop, sku: &str, price: i64, stock: i64) {
    let body = json!({"name": sku, "price": price, "currency": "EUR", "stock": stock});
    let resp = shop.put_product(sku, &body);
    assert_eq!(resp.status, 200, "{}", resp.text());
}

/// A coupon `code` (EUR) with the members of `body`.
fn coupon(shop: &Shop, code: &str, body: Value) {
    let mut all = json!({"currency": "EUR"});
    all.as_object_mut()
        .unwrap()
        .extend(body.as_object().unwrap().clone());
    let resp = shop.put_coupon(code, &all);
    assert!(resp.status == 201 || resp.status == 200, "{}", resp.text());
}

fn with_coupon(sku: &str, qty: i64, code: &str) -> Value {
    json!({"items": [{"sku": sku, "quantity": qty}], "coupon_code": code})
}

#[test]
fn an_order_with_a_coupon_is_priced_with_its_discount_and_a_replay_never_tries_again() {
    let shop = Shop::boot_without_cron();
    product(&shop, "A", 1999, 10);
    coupon(&shop, "TENPC", json!({"percent_off": 10}));

    let resp = shop.order_as("alice", "k1", &with_coupon("A", 3, "TENPC"));
    assert_eq!(resp.status, 201, "{}", resp.text());
    let order = resp.json();
    // 5997 * 10% = 599.7, rounded down to the minor unit.
    assert_eq!(
        (&order["subtotal"], &order["discount"], &order["total"]),
        (&json!(5997), &json!(599), &json!(5398)),
        "{order}"
    );
    assert_eq!(order["coupon_code"], "TENPC");
    let id = order["order_id"].as_str().unwrap();
    let held = shop.redemption("TENPC", id);
    assert_eq!(
        (
            &held["status"],
            &held["user_id"],
            &held["subtotal"],
            &held["discount"]
        ),
        (&json!("HELD"), &json!("alice"), &json!(5997), &json!(599)),
        "the redemption id is the order id: {held}"
    );
    assert_eq!(shop.get_order(id).json()["total"], 5398);

    // The hold is cancelled behind the order's back: a second try would now be refused (a try
    // after its cancel), so a replay that answers the stored order proves it tried nothing.
    let cancel = shop.settle_coupon("TENPC", id, "cancel");
    assert_eq!(cancel.status, 200, "{}", cancel.text());
    let again = shop.order_as("alice", "k1", &with_coupon("A", 3, "TENPC"));
    assert_eq!(again.status, 201, "{}", again.text());
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.json(), order);
    assert_eq!(shop.levels("A"), (7, 3, 0), "one reservation");
}

#[test]
fn every_refusal_names_coupon_code_and_releases_the_reservation() {
    let shop = Shop::boot_without_cron();
    product(&shop, "A", 1000, 100);
    coupon(
        &shop,
        "OLD",
        json!({"amount_off": 100, "ends_at": "2020-01-01T00:00:00Z"}),
    );
    coupon(
        &shop,
        "SOON",
        json!({"amount_off": 100, "starts_at": "2100-01-01T00:00:00Z"}),
    );
    coupon(
        &shop,
        "BIG",
        json!({"amount_off": 100, "min_subtotal": 5000}),
    );
    let usd = shop.put_coupon("DOLLAR", &json!({"amount_off": 100, "currency": "USD"}));
    assert_eq!(usd.status, 201, "{}", usd.text());
    coupon(
        &shop,
        "ONE",
        json!({"amount_off": 100, "max_redemptions": 1}),
    );
    coupon(&shop, "ONCE", json!({"amount_off": 100, "per_customer": 1}));
    // The only redemption of ONE goes to bob; alice uses ONCE once.
    let first = shop.order_as("bob", "b1", &with_coupon("A", 1, "ONE"));
    assert_eq!(first.status, 201, "{}", first.text());
    let first = shop.order_as("alice", "a0", &with_coupon("A", 1, "ONCE"));
    assert_eq!(first.status, 201, "{}", first.text());
    assert_eq!(shop.levels("A"), (98, 2, 0));

    for (code, qty, status, slug) in [
        ("OLD", 1, 409, "coupon-expired"),
        ("SOON", 1, 409, "coupon-not-yet-valid"),
        ("BIG", 4, 409, "coupon-minimum"),
        ("DOLLAR", 1, 409, "coupon-currency"),
        ("ONE", 1, 409, "coupon-sold-out"),
        ("ONCE", 1, 409, "coupon-customer-limit"),
        ("NOSUCH", 1, 422, "unknown-coupon"),
    ] {
        let resp = shop.order_as("alice", &format!("k-{code}"), &with_coupon("A", qty, code));
        let p = assert_problem(&resp, status, Some("coupon_code"));
        assert!(
            p["type"].as_str().unwrap().ends_with(&format!("/{slug}")),
            "{code}: {p}"
        );
        assert_eq!(shop.levels("A"), (98, 2, 0), "{code}: reservation released");
        if code == "BIG" {
            assert_eq!(p["min_subtotal"], 5000, "{p}");
        }
    }
    assert_eq!(shop.coupon_usage("ONE"), (1, 0));
    assert_eq!(shop.coupon_usage("ONCE"), (1, 0));
    // A refusal is not stored as the key's answer: once the coupon allows it, the same request
    // goes through.
    coupon(
        &shop,
        "BIG",
        json!({"amount_off": 100, "min_subtotal": 4000}),
    );
    let fixed = shop.order_as("alice", "k-BIG", &with_coupon("A", 4, "BIG"));
    assert_eq!(fixed.status, 201, "{}", fixed.text());
    assert_eq!(fixed.json()["discount"], 100);
}

#[test]
fn fifty_concurrent_orders_for_ten_redemptions_give_exactly_ten_discounts() {
    let shop = Arc::new(Shop::boot_without_cron());
    product(&shop, "A", 1000, 1000);
    coupon(
        &shop,
        "TEN",
        json!({"amount_off": 250, "max_redemptions": 10}),
    );
    let barrier = Arc::new(Barrier::new(50));
    let answers: Vec<(u16, Value)> = (0..50)
        .map(|i| {
            let (shop, barrier) = (shop.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let resp = shop.order_as(&format!("c{i}"), "k", &with_coupon("A", 1, "TEN"));
                (resp.status, resp.json())
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let created: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == 201)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(created.len(), 10, "{answers:?}");
    assert!(created
        .iter()
        .all(|o| o["discount"] == 250 && o["total"] == 750));
    for (status, body) in answers.iter().filter(|(s, _)| *s != 201) {
        assert_eq!(*status, 409, "{body}");
        assert_eq!(body["field"], "coupon_code", "{body}");
        assert!(body["type"].as_str().unwrap().ends_with("/coupon-sold-out"));
    }
    assert_eq!(shop.coupon_usage("TEN"), (10, 0));
    assert_eq!(
        shop.levels("A"),
        (990, 10, 0),
        "the 40 refused released theirs"
    );
}

#[test]
fn a_coupon_context_that_fails_answers_503_and_releases_the_reservation() {
    let shop = Shop::boot_without_cron();
    product(&shop, "A", 1000, 10);
    coupon(&shop, "FAIL", json!({"amount_off": 100}));
    // The coupon database refuses every new redemption: the coupon component answers 503.
    shop.sql_in(
        "coupons",
        "CREATE TRIGGER e2e_refuse_holds BEFORE INSERT ON redemptions \
         BEGIN SELECT RAISE(ABORT, 'forced failure of the coupon store'); END",
    );
    let resp = shop.order_as("alice", "k", &with_coupon("A", 2, "FAIL"));
    assert_problem(&resp, 503, Some("coupon_code"));
    assert_eq!(shop.levels("A"), (10, 0, 0));
    assert_eq!(shop.coupon_usage("FAIL"), (0, 0));

    // Back up: the same key places the order.
    shop.sql_in("coupons", "DROP TRIGGER e2e_refuse_holds");
    let resp = shop.order_as("alice", "k", &with_coupon("A", 2, "FAIL"));
    assert_eq!(resp.status, 201, "{}", resp.text());
    assert_eq!(resp.json()["total"], 1900);
    assert_eq!(shop.coupon_usage("FAIL"), (1, 0));
}

#[test]
fn a_failed_order_write_keeps_its_hold_for_the_retry_under_the_same_order_id() {
    let shop = Shop::boot_without_cron();
    product(&shop, "A", 1000, 10);
    coupon(
        &shop,
        "RETRY",
        json!({"amount_off": 100, "per_customer": 1}),
    );
    shop.migrate_orders();
    let refuse = "CREATE TRIGGER e2e_refuse_orders BEFORE INSERT ON orders \
                  BEGIN SELECT RAISE(ABORT, 'forced failure of the order write'); END";
    shop.sql_for("alice", refuse);
    let resp = shop.order_as("alice", "k", &with_coupon("A", 1, "RETRY"));
    let p = assert_problem(&resp, 503, None);
    assert_eq!(p["reservation_released"], true, "{p}");
    assert_eq!(shop.levels("A"), (10, 0, 0));
    // The try happened and its order did not come: the hold stays (the coupon context's sweep
    // cancels it if no retry comes).
    assert_eq!(shop.coupon_usage("RETRY"), (1, 0));

    // The retry tries under the same order id: the hold is replayed, not a second one (which
    // the per-customer limit of 1 would refuse).
    shop.sql_for("alice", "DROP TRIGGER e2e_refuse_orders");
    let resp = shop.order_as("alice", "k", &with_coupon("A", 1, "RETRY"));
    assert_eq!(resp.status, 201, "{}", resp.text());
    let order = resp.json();
    assert_eq!(order["discount"], 100);
    let held = shop.redemption("RETRY", order["order_id"].as_str().unwrap());
    assert_eq!(held["status"], "HELD", "{held}");
    assert_eq!(shop.coupon_usage("RETRY"), (1, 0));
}

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn a_paid_order_confirms_its_coupon() {
    let shop = Shop::boot_without_cron();
    product(&shop, "A", 2000, 10);
    coupon(&shop, "PAYME", json!({"amount_off": 500}));
    let order = shop
        .order_as("alice", "k", &with_coupon("A", 1, "PAYME"))
        .json();
    assert_eq!(order["total"], 1500, "{order}");
    let id = order["order_id"].as_str().unwrap();
    shop.pay("evt_paid_coupon", &order);
    shop.wait_order(id, WAIT, |o| o["status"] == "PAID");
    // The coupon receiver (its own group on events:orders, rung with the stock receiver by
    // the same doorbell) confirms the redemption on OrderPaid.
    shop.wait_redemption("PAYME", id, "CONFIRMED", WAIT);
    assert_eq!(shop.coupon_usage("PAYME"), (0, 1));
    // A confirmed redemption is never cancelled, even by an operator's cancel.
    assert_eq!(shop.settle_coupon("PAYME", id, "cancel").status, 409);
}

#[test]
fn a_cancelled_or_expired_order_cancels_its_coupon_and_gives_its_capacity_back() {
    let shop = Shop::boot_without_cron();
    product(&shop, "A", 2000, 10);
    coupon(
        &shop,
        "SOLO",
        json!({"amount_off": 500, "max_redemptions": 1}),
    );

    let first = shop
        .order_as("alice", "k1", &with_coupon("A", 1, "SOLO"))
        .json();
    let id = first["order_id"].as_str().unwrap();
    let sold_out = shop.order_as("bob", "k1", &with_coupon("A", 1, "SOLO"));
    assert_problem(&sold_out, 409, Some("coupon_code"));
    assert_eq!(shop.cancel("alice", id).status, 200);
    shop.wait_redemption("SOLO", id, "CANCELLED", WAIT);
    assert_eq!(shop.coupon_usage("SOLO"), (0, 0));

    // Its capacity came back: bob's order holds it now, and expires.
    let second = shop.order_as("bob", "k2", &with_coupon("A", 1, "SOLO"));
    assert_eq!(second.status, 201, "{}", second.text());
    let second = second.json();
    let id = second["order_id"].as_str().unwrap();
    shop.sql_for(
        "bob",
        &format!("UPDATE orders SET expires_ms = 0 WHERE order_id = '{id}'"),
    );
    let swept = shop.post_internal("/api/orders/events/drain");
    assert_eq!(swept.status, 200, "{}", swept.text());
    shop.wait_order(id, WAIT, |o| o["status"] == "EXPIRED");
    shop.wait_redemption("SOLO", id, "CANCELLED", WAIT);
    assert_eq!(shop.coupon_usage("SOLO"), (0, 0));
    let third = shop.order_as("carol", "k3", &with_coupon("A", 1, "SOLO"));
    assert_eq!(third.status, 201, "{}", third.text());
}

/// `POST /api/coupons/events/drain` (the coupon receiver with its sweep), as the compensator's
/// ring runs it.
fn coupon_sweep(shop: &Shop) -> Value {
    let resp = shop.post_internal("/api/coupons/events/drain");
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp.json()
}

#[test]
fn a_hold_whose_order_never_came_is_cancelled_by_the_sweep_once_with_two_sweeps_overlapping() {
    // Holds are orphans at once (timeout 0): the sweep is what this test drives.
    let shop = Arc::new(Shop::boot_without_cron_with(|b| {
        b.variable("coupon_hold_timeout_seconds", "0")
    }));
    product(&shop, "A", 1000, 10);
    coupon(
        &shop,
        "CRASH",
        json!({"amount_off": 100, "max_redemptions": 2}),
    );
    // An order that was written: its OrderCreated tells the coupon context it exists.
    let kept = shop
        .order_as("bob", "k", &with_coupon("A", 1, "CRASH"))
        .json();
    let kept_id = kept["order_id"].as_str().unwrap().to_owned();
    coupon_sweep(&shop);
    // A crash between the try and the order write: forced by the shard refusing the order.
    shop.migrate_orders();
    shop.sql_for(
        "alice",
        "CREATE TRIGGER e2e_refuse_orders BEFORE INSERT ON orders \
         BEGIN SELECT RAISE(ABORT, 'forced failure of the order write'); END",
    );
    let lost = shop.order_as("alice", "k", &with_coupon("A", 1, "CRASH"));
    assert_problem(&lost, 503, None);
    assert_eq!(
        shop.coupon_usage("CRASH"),
        (2, 0),
        "the lost order's hold is left"
    );

    let barrier = Arc::new(Barrier::new(2));
    let sweeps: Vec<Value> = (0..2)
        .map(|_| {
            let (shop, barrier) = (shop.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                coupon_sweep(&shop)
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let cancelled: i64 = sweeps
        .iter()
        .map(|s| s["orphans_cancelled"].as_i64().unwrap())
        .sum();
    assert_eq!(cancelled, 1, "{sweeps:?}");
    assert_eq!(shop.coupon_usage("CRASH"), (1, 0), "capacity back once");
    assert_eq!(shop.redemption("CRASH", &kept_id)["status"], "HELD");
    let lost_id = e2e::order_id_of("alice", "k");
    assert_eq!(shop.redemption("CRASH", &lost_id)["status"], "CANCELLED");

    // The retry after the sweep finds its hold cancelled (a try after its cancel is refused):
    // 409 naming coupon_code, nothing reserved.
    shop.sql_for("alice", "DROP TRIGGER e2e_refuse_orders");
    let retry = shop.order_as("alice", "k", &with_coupon("A", 1, "CRASH"));
    assert_problem(&retry, 409, Some("coupon_code"));
    assert_eq!(shop.levels("A"), (9, 1, 0));
}

/// `OrderCancelled` of order `order_id` (customer `user`) with coupon `code`, as the order
/// context's outbox would send it, in its envelope (`message_id`).
fn cancelled_envelope(message_id: &str, order_id: &str, user: &str, code: &str) -> String {
    use shop_domain::messages::{encode, Envelope, OrderCancelled, OrderChange, OrderEvent};
    use shop_domain::new_order::{CouponCode, UserId};
    use shop_domain::order::OrderStatus;
    use shop_domain::reservation::ReservationId;
    let event = OrderEvent::OrderCancelled(OrderCancelled {
        order: OrderChange {
            order_id: order_id.to_owned(),
            user_id: UserId::parse(user).unwrap(),
            status: OrderStatus::Cancelled,
            previous_status: OrderStatus::PendingPayment,
            version: 2,
            // A reservation nobody holds: the stock context's release of it changes nothing.
            reservation_id: ReservationId::parse("rsv-coupon-test-none").unwrap(),
            coupon_code: Some(CouponCode::parse(code).unwrap()),
        },
        cancelled_at: "2026-01-01T00:00:00.000Z".to_owned(),
        reason: None,
    });
    let (kind, payload) = encode(&event).unwrap();
    let envelope = Envelope {
        message_id: message_id.to_owned(),
        topic: "orders".to_owned(),
        kind,
        aggregate_id: order_id.to_owned(),
        seq: 2,
        payload,
        trace_id: None,
        created_at: "2026-01-01T00:00:00.000Z".to_owned(),
    };
    serde_json::to_string(&envelope).unwrap()
}

#[test]
fn a_cancel_that_overtakes_its_try_refuses_the_try_and_a_redelivered_message_changes_nothing() {
    let shop = Shop::boot_without_cron();
    product(&shop, "A", 1000, 10);
    coupon(
        &shop,
        "EARLY",
        json!({"amount_off": 100, "max_redemptions": 5}),
    );
    // The cancel of alice's order (key k) arrives before the order tried its coupon, twice (a
    // redelivery under the same message id).
    let order_id = e2e::order_id_of("alice", "k");
    let envelope = cancelled_envelope("msg-early-cancel", &order_id, "alice", "EARLY");
    for _ in 0..2 {
        shop.cli(&["XADD", "events:orders", "*", "m", &envelope]);
    }
    let drained = coupon_sweep(&shop);
    assert_eq!(
        (&drained["read"], &drained["applied"]),
        (&json!(2), &json!(2)),
        "{drained}"
    );
    assert_eq!(
        shop.sql_in("coupons", "SELECT COUNT(*) AS n FROM inbox")[0]["n"],
        1,
        "the redelivery was dropped by the inbox"
    );
    // The TCC table's empty cancel: nothing held, the cancel remembered.
    assert_eq!(shop.redemption("EARLY", &order_id)["status"], "CANCELLED");
    assert_eq!(shop.coupon_usage("EARLY"), (0, 0));

    // The late try is refused: no hold nobody would give back; the reservation is released.
    let late = shop.order_as("alice", "k", &with_coupon("A", 1, "EARLY"));
    let p = assert_problem(&late, 409, Some("coupon_code"));
    assert!(
        p["type"].as_str().unwrap().ends_with("/redemption-state"),
        "{p}"
    );
    assert_eq!(shop.levels("A"), (10, 0, 0));
    assert_eq!(shop.coupon_usage("EARLY"), (0, 0));
}

#[test]
fn an_open_coupon_breaker_answers_503_without_reserving_or_calling_the_coupon_context() {
    let shop = Shop::boot_without_cron_with(|b| {
        b.variable(
            "breaker_order_coupon",
            "errors 50% over 10s, min 1, open 60s",
        )
    });
    product(&shop, "A", 1000, 10);
    coupon(&shop, "BRK", json!({"amount_off": 100}));
    shop.sql_in(
        "coupons",
        "CREATE TRIGGER e2e_refuse_holds BEFORE INSERT ON redemptions \
         BEGIN SELECT RAISE(ABORT, 'forced failure of the coupon store'); END",
    );
    // One failed try (the coupon component answers 503) opens the breaker (min 1 call).
    let failed = shop.order_as("alice", "k1", &with_coupon("A", 1, "BRK"));
    assert_problem(&failed, 503, Some("coupon_code"));
    shop.sql_in("coupons", "DROP TRIGGER e2e_refuse_holds");
    let open = shop.order_as("alice", "k2", &with_coupon("A", 1, "BRK"));
    let p = assert_problem(&open, 503, None);
    assert_eq!(p["breaker"], "order.coupon", "{p}");
    assert!(open.header("retry-after").is_some());
    assert_eq!(shop.levels("A"), (10, 0, 0), "nothing reserved");
    assert_eq!(
        shop.coupon_usage("BRK"),
        (0, 0),
        "the coupon context was not called"
    );
    // Orders without a coupon do not pass this breaker.
    let plain = shop.order_as(
        "alice",
        "k3",
        &json!({"items": [{"sku": "A", "quantity": 1}]}),
    );
    assert_eq!(plain.status, 201, "{}", plain.text());
}

/// An `sqlite3` process holding the write lock of `file` (`BEGIN IMMEDIATE`) until
/// [`WriteLock::release`]: every writer of that database waits meanwhile.
struct WriteLock(std::process::Child);

impl WriteLock {
    fn take(file: &std::path::Path) -> WriteLock {
        use std::io::{BufRead, Write};
        use std::process::{Command, Stdio};
        let mut child = Command::new("sqlite3")
            .arg(file)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run sqlite3");
        let stdin = child.stdin.as_mut().unwrap();
        stdin
            .write_all(b".timeout 5000\nBEGIN IMMEDIATE;\nSELECT 'locked';\n")
            .unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        let mut out = std::io::BufReader::new(child.stdout.as_mut().unwrap());
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "locked");
        WriteLock(child)
    }

    fn release(mut self) {
        use std::io::Write;
        let mut stdin = self.0.stdin.take().unwrap();
        stdin.write_all(b"COMMIT;\n").unwrap();
        drop(stdin);
        self.0.wait().unwrap();
    }
}

#[test]
fn a_coupon_try_that_times_out_answers_503_and_the_sweep_leaves_no_hold() {
    let shop = Shop::boot_without_cron_with(|b| {
        b.variable("breaker_order_coupon", "min 1000000, timeout 300ms")
            .variable("coupon_hold_timeout_seconds", "0")
    });
    product(&shop, "A", 1000, 10);
    coupon(&shop, "SLOW", json!({"amount_off": 100}));
    // The coupon database's write lock is held: the try waits past the order's timeout.
    let lock = WriteLock::take(&shop.db_file("coupons"));
    let resp = shop.order_as("alice", "k", &with_coupon("A", 1, "SLOW"));
    assert_problem(&resp, 503, Some("coupon_code"));
    assert_eq!(shop.levels("A"), (10, 0, 0), "the reservation is released");
    lock.release();
    // The abandoned try may still hold a redemption once the lock is free (the order never
    // came): the sweep cancels it, and nothing stays held.
    let id = e2e::order_id_of("alice", "k");
    let held = "SELECT COUNT(*) AS n FROM redemptions WHERE status = 'HELD'";
    e2e::wait_for_or(Duration::from_secs(5), || {
        let n = shop.sql_in("coupons", &format!("{held} OR redemption_id = '{id}'"));
        (n[0]["n"] != 0).then_some(())
    });
    let before = shop.sql_in("coupons", held)[0]["n"].clone();
    let swept = coupon_sweep(&shop);
    assert_eq!(swept["orphans_cancelled"], before, "{swept}");
    assert_eq!(shop.sql_in("coupons", held)[0]["n"], 0);
    assert_eq!(shop.coupon_usage("SLOW"), (0, 0));
}

#[test]
fn the_compensators_ring_runs_the_coupon_sweep() {
    let shop = Shop::boot_without_cron_with(|b| b.variable("coupon_hold_timeout_seconds", "0"));
    product(&shop, "A", 1000, 10);
    coupon(&shop, "RING", json!({"amount_off": 100}));
    shop.migrate_orders();
    shop.sql_for(
        "alice",
        "CREATE TRIGGER e2e_refuse_orders BEFORE INSERT ON orders \
         BEGIN SELECT RAISE(ABORT, 'forced failure of the order write'); END",
    );
    let lost = shop.order_as("alice", "k", &with_coupon("A", 1, "RING"));
    assert_problem(&lost, 503, None);
    assert_eq!(shop.coupon_usage("RING"), (1, 0));
    // One compensator run (as its cron would): its `sweep` ring of doorbell:orders wakes
    // coupon-events, whose sweep cancels the hold.
    shop.compensator_run();
    let id = e2e::order_id_of("alice", "k");
    shop.wait_redemption("RING", &id, "CANCELLED", WAIT);
    assert_eq!(shop.coupon_usage("RING"), (0, 0));
}

//! Receivers' dead letters end to end (issue 13 §2, §7): listed beside the outbox's, replayed
//! once, purged past their retention; a batch SQLite rolled back dead-letters none of its
//! innocent messages, and a failing dead-letter step cannot undo a committed batch; a
//! dead-lettered `OrderPaid` keeps its units from the TTL sweep until it is replayed; every
//! sweep waits the same grace past a reservation's expiry.
//!
//! Faults are injected for real: SQLite triggers that refuse a write (`RAISE(ABORT)`) or roll the
//! whole transaction back (`RAISE(ROLLBACK)`), a Redis key of the wrong type. A message's
//! deliveries are real deliveries: each redelivery is the receiver's own `XAUTOCLAIM` of an
//! entry whose idle time the test moves past the receiver's 30 s (`XCLAIM ... IDLE ... JUSTID`,
//! which does not count a delivery), then a ring of the doorbell.

use std::time::Duration;

use e2e::{admin_auth, assert_problem, stripe_event, unix_now, wait_for, Shop};
use serde_json::{json, Value};
use shop_domain::reservation::EXPIRY_GRACE_MS;

const WAIT: Duration = Duration::from_secs(30);

/// A product with `stock` units at 1299 EUR.
fn product(shop: &Shop, sku: &str, stock: i64) {
    let body = json!({"name": "Mug", "price": 1299, "currency": "EUR", "stock": stock});
    let resp = shop.put_product(sku, &body);
    assert!(resp.status == 200 || resp.status == 201, "{}", resp.text());
}

/// The provider's `payment_intent.succeeded` for `order`, in full.
fn paid(shop: &Shop, event_id: &str, order: &Value) {
    let id = order["order_id"].as_str().expect("order_id");
    let total = order["total"].as_i64().expect("total");
    let event = stripe_event(event_id, "payment_intent.succeeded", id, total, "eur");
    let resp = shop.webhook(&event);
    assert_eq!(resp.status, 200, "{}", resp.text());
}

/// A SQLite trigger on the order context's database that makes marking `order_id` PAID fail:
/// `RAISE(ABORT)` (the statement fails, the transaction stays) or `RAISE(ROLLBACK)` (SQLite
/// rolls the whole transaction back).
fn refuse_paid(shop: &Shop, name: &str, order_id: &str, how: &str) {
    shop.sql(&format!(
        "CREATE TRIGGER {name} BEFORE UPDATE ON orders \
         WHEN NEW.order_id = '{order_id}' AND NEW.status = 'PAID' \
         BEGIN SELECT RAISE({how}, 'injected fault {name}'); END"
    ));
}

/// The entries of `group` pending on `stream` (handed out, not acknowledged).
fn pending(shop: &Shop, stream: &str, group: &str) -> Vec<String> {
    let out = shop.cli(&["XPENDING", stream, group, "-", "+", "100"]);
    // Before the receiver made its group, Redis answers NOGROUP: nothing is pending yet.
    if out.starts_with("NOGROUP") {
        return Vec::new();
    }
    // Four lines per entry: id, consumer, idle ms, deliveries.
    let lines: Vec<&str> = out.lines().collect();
    lines.chunks(4).map(|e| e[0].to_owned()).collect()
}

/// Hands `entry` to `group`'s receiver once more: its idle time past the receiver's takeover
/// threshold (without counting a delivery), then a ring of the topic's doorbell; waits until the
/// receiver logged that delivery `n` failed or applied it.
fn redeliver(shop: &Shop, topic: &str, group: &str, entry: &str, n: u32) {
    let stream = format!("events:{topic}");
    shop.cli(&[
        "XCLAIM", &stream, group, group, "0", entry, "IDLE", "3600000", "JUSTID",
    ]);
    shop.cli(&["PUBLISH", &format!("doorbell:{topic}"), ""]);
    wait_delivery(shop, entry, n);
}

/// Waits until the receiver logged delivery `n` of `entry` as failed, or no longer holds it.
fn wait_delivery(shop: &Shop, entry: &str, n: u32) {
    let line = format!("entry {entry} failed (delivery {n})");
    wait_for(WAIT, &format!("delivery {n} of {entry}"), || {
        let log = format!("{}{}", shop.app.stdout(), shop.app.stderr());
        log.contains(&line).then_some(())
    });
}

/// Waits for `count` payments on `events:payments`, then makes each one pending for the order
/// receiver's group as if it had been handed out four times already and abandoned (idle past
/// the takeover threshold): the receiver's next drain takes them over together, each at its
/// fifth delivery. Returns their entry ids.
fn failed_four_times(shop: &Shop, count: usize) -> Vec<String> {
    let stream = "events:payments";
    wait_for(WAIT, &format!("{count} payments on the stream"), || {
        (shop.cli(&["XLEN", stream]).trim() == count.to_string()).then_some(())
    });
    shop.cli(&["XGROUP", "CREATE", stream, "order", "0"]);
    let read = [
        "XREADGROUP",
        "GROUP",
        "order",
        "order",
        "STREAMS",
        stream,
        ">",
    ];
    shop.cli(&read);
    let entries = pending(shop, stream, "order");
    assert_eq!(entries.len(), count);
    let mut claim = vec!["XCLAIM", stream, "order", "order", "0"];
    claim.extend(entries.iter().map(String::as_str));
    claim.extend(["IDLE", "3600000", "RETRYCOUNT", "4", "JUSTID"]);
    shop.cli(&claim);
    entries
}

/// `GET /api/ops/dead-letters` as the admin.
fn dead_letters(shop: &Shop) -> Value {
    let (k, v) = admin_auth();
    let resp = shop
        .app
        .send("GET", "/api/ops/dead-letters", &[(k, &v)], None)
        .expect("GET dead letters");
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp.json()
}

/// An order of one `sku` whose payment the order receiver fails (the trigger `trigger`) five real
/// times, so it is dead-lettered: the order and the receiver's dead letter.
fn payment_dead_lettered(shop: &Shop, sku: &str, trigger: &str) -> (Value, Value) {
    product(shop, sku, 5);
    let o = shop.create_order(&sku.to_lowercase(), sku, 1);
    let id = o["order_id"].as_str().unwrap();
    refuse_paid(shop, trigger, id, "ABORT");
    paid(shop, &format!("evt_{trigger}"), &o);
    let entry = wait_for(WAIT, "the payment handed to the receiver", || {
        pending(shop, "events:payments", "order").pop()
    });
    wait_delivery(shop, &entry, 1);
    for n in 2..=5 {
        redeliver(shop, "payments", "order", &entry, n);
    }
    let dead = wait_for(WAIT, "the dead letter", || {
        receiver_dead(shop, "payments", "order").pop()
    });
    (o, dead)
}

/// The receiver dead letters of `topic` / `group` in the listing.
fn receiver_dead(shop: &Shop, topic: &str, group: &str) -> Vec<Value> {
    let all = dead_letters(shop)["dead_letters"].as_array().cloned();
    all.unwrap_or_default()
        .into_iter()
        .filter(|d| d["source"] == "receiver" && d["topic"] == topic && d["group"] == group)
        .collect()
}

/// `POST /api/ops/dead-letters/{id}/replay` as the admin.
fn replay(shop: &Shop, id: &str) -> testkit::Response {
    let (k, v) = admin_auth();
    let path = format!("/api/ops/dead-letters/{id}/replay");
    shop.app
        .send("POST", &path, &[(k, &v)], None)
        .expect("POST replay")
}

fn is_status(s: &'static str) -> impl Fn(&Value) -> bool {
    move |o| o["status"] == s
}

/// A payment message the order receiver fails to apply five times is dead-lettered with its
/// topic, group, message, last error and deliveries, listed beside an outbox dead letter under
/// an id of its own; replayed once it applies (the order is PAID), a second replay is 404, and
/// the same message appended again changes nothing (the inbox).
#[test]
fn a_receiver_dead_letter_is_listed_beside_the_outbox_and_replayed_once() {
    let shop = Shop::boot_without_cron();
    let (o, dead) = payment_dead_lettered(&shop, "DL-1", "refuse_dl_1");
    let id = o["order_id"].as_str().unwrap();
    assert_eq!(dead["type"], "PaymentSucceeded", "{dead}");
    assert_eq!(dead["aggregate_id"], id, "{dead}");
    assert_eq!(dead["deliveries"], 5, "{dead}");
    assert_eq!(dead["message"]["payload"]["order_id"], id, "{dead}");
    let error = dead["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("injected fault refuse_dl_1"), "{dead}");
    let rid = dead["id"].as_str().unwrap().to_owned();
    assert!(rid.starts_with("rcv:payments:order:"), "{dead}");
    assert!(pending(&shop, "events:payments", "order").is_empty());
    assert_eq!(shop.get_order(id).json()["status"], "PENDING_PAYMENT");

    // An outbox dead letter of the same shop is listed too, under its message id.
    let mid = shop.sql("SELECT message_id FROM outbox WHERE type = 'OrderCreated'")[0]
        ["message_id"]
        .as_str()
        .unwrap()
        .to_owned();
    shop.sql(&format!(
        "UPDATE outbox SET published_at = NULL, dead_at = '2026-01-01T00:00:00.000Z', \
         attempts = 10, last_error = 'x' WHERE message_id = '{mid}'"
    ));
    let listing = dead_letters(&shop);
    let ids: Vec<(&str, &str)> = listing["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["source"].as_str().unwrap(), d["id"].as_str().unwrap()))
        .collect();
    assert_eq!(
        ids,
        vec![("outbox", mid.as_str()), ("receiver", rid.as_str())]
    );
    assert_eq!(
        listing["receivers"],
        json!([{"topic": "payments", "group": "order", "count": 1}])
    );

    // The fault is gone; the replay applies the payment, once.
    shop.sql("DROP TRIGGER refuse_dl_1");
    let resp = replay(&shop, &rid);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let paid_order = shop.wait_order(id, WAIT, is_status("PAID"));
    assert_problem(&replay(&shop, &rid), 404, None);
    assert!(receiver_dead(&shop, "payments", "order").is_empty());
    // Appended once more (as a second replay would): the inbox drops it.
    let envelope = serde_json::to_string(&dead["message"]).unwrap();
    shop.cli(&["XADD", "events:payments", "*", "m", &envelope]);
    shop.cli(&["PUBLISH", "doorbell:payments", ""]);
    shop.wait_group_caught_up("events:payments", "order", "", WAIT);
    assert_eq!(shop.get_order(id).json()["version"], paid_order["version"]);
    let paid_msgs = shop.sql("SELECT COUNT(*) AS n FROM outbox WHERE type = 'OrderPaid'");
    assert_eq!(paid_msgs[0]["n"], 1);
    // Only the admin sees or replays dead letters.
    assert_eq!(shop.app.get("/api/ops/dead-letters").unwrap().status, 401);

    // When Redis fails the listing, the outbox's dead letters are listed all the same.
    shop.cli(&["DEL", "dead:index"]);
    shop.cli(&["SET", "dead:index", "not a set"]);
    let listing = dead_letters(&shop);
    assert_eq!(listing["dead_letters"][0]["id"], mid.as_str(), "{listing}");
    assert!(listing["receivers_unavailable"].is_string(), "{listing}");
}

/// Three payments reach the order receiver together, each at its fifth delivery; the second's
/// transaction is rolled back whole by SQLite. The batch is applied again message by message:
/// the first and third are applied (PAID), and only the second, whose own transaction fails, is
/// dead-lettered.
#[test]
fn a_rolled_back_batch_dead_letters_none_of_its_innocent_messages() {
    let mut shop = Shop::boot_without_receivers();
    product(&shop, "RB-1", 10);
    let orders: Vec<Value> = (0..3)
        .map(|i| shop.create_order(&format!("rb-{i}"), "RB-1", 1))
        .collect();
    let ids: Vec<&str> = orders
        .iter()
        .map(|o| o["order_id"].as_str().unwrap())
        .collect();
    refuse_paid(&shop, "rollback_rb_1", ids[1], "ROLLBACK");
    for (i, o) in orders.iter().enumerate() {
        paid(&shop, &format!("evt_rb_{i}"), o);
    }
    // All three failed four times before (as a batch with this poison in it would have).
    failed_four_times(&shop, 3);

    shop.restart_without_cron();
    shop.cli(&["PUBLISH", "doorbell:payments", ""]);
    for id in [ids[0], ids[2]] {
        shop.wait_order(id, WAIT, is_status("PAID"));
    }
    let dead = wait_for(WAIT, "the poison's dead letter", || {
        receiver_dead(&shop, "payments", "order").into_iter().next()
    });
    assert_eq!(dead["aggregate_id"], ids[1], "{dead}");
    assert_eq!(receiver_dead(&shop, "payments", "order").len(), 1);
    assert_eq!(shop.get_order(ids[1]).json()["status"], "PENDING_PAYMENT");
    assert!(pending(&shop, "events:payments", "order").is_empty());
}

/// When SQLite rolls back every transaction (each payment alone too), the database is failing,
/// not the messages: nothing is dead-lettered, everything stays pending, and once the database
/// takes writes again the next delivery applies every payment.
#[test]
fn a_database_that_rolls_back_every_transaction_dead_letters_nothing() {
    let mut shop = Shop::boot_without_receivers();
    product(&shop, "RB-2", 10);
    let orders: Vec<Value> = (0..2)
        .map(|i| shop.create_order(&format!("rb2-{i}"), "RB-2", 1))
        .collect();
    shop.sql(
        "CREATE TRIGGER failing_db BEFORE UPDATE ON orders WHEN NEW.status = 'PAID' \
         BEGIN SELECT RAISE(ROLLBACK, 'injected: the database rolls back'); END",
    );
    for (i, o) in orders.iter().enumerate() {
        paid(&shop, &format!("evt_rb2_{i}"), o);
    }
    let entries = failed_four_times(&shop, 2);
    shop.restart_without_cron();
    shop.cli(&["PUBLISH", "doorbell:payments", ""]);
    let line = "the database rolled back the transaction of every entry of the batch";
    wait_for(WAIT, "the receiver giving up on the batch", || {
        shop.app.stderr().contains(line).then_some(())
    });
    assert!(receiver_dead(&shop, "payments", "order").is_empty());
    assert_eq!(pending(&shop, "events:payments", "order"), entries);

    shop.sql("DROP TRIGGER failing_db");
    for entry in &entries {
        shop.cli(&[
            "XCLAIM",
            "events:payments",
            "order",
            "order",
            "0",
            entry,
            "IDLE",
            "3600000",
            "JUSTID",
        ]);
    }
    shop.cli(&["PUBLISH", "doorbell:payments", ""]);
    for o in &orders {
        shop.wait_order(o["order_id"].as_str().unwrap(), WAIT, is_status("PAID"));
    }
    assert!(receiver_dead(&shop, "payments", "order").is_empty());
}

/// The dead-letter step runs after the batch's transaction ended: when Redis refuses it, the
/// innocent payment of the batch is applied all the same (its commit does not wait on, or
/// depend on, Redis), and the poison stays pending until the dead-letter stream takes it.
#[test]
fn a_failing_dead_letter_step_cannot_undo_a_committed_batch() {
    let mut shop = Shop::boot_without_receivers();
    product(&shop, "DS-1", 10);
    let innocent = shop.create_order("ds-0", "DS-1", 1);
    let poison = shop.create_order("ds-1", "DS-1", 1);
    let poison_id = poison["order_id"].as_str().unwrap();
    refuse_paid(&shop, "refuse_ds_1", poison_id, "ABORT");
    paid(&shop, "evt_ds_0", &innocent);
    paid(&shop, "evt_ds_1", &poison);
    let entries = failed_four_times(&shop, 2);
    // The dead-letter stream is a key of the wrong type: Redis refuses to dead-letter.
    shop.cli(&["SET", "dead:payments:order", "not a stream"]);

    shop.restart_without_cron();
    shop.cli(&["PUBLISH", "doorbell:payments", ""]);
    shop.wait_order(
        innocent["order_id"].as_str().unwrap(),
        WAIT,
        is_status("PAID"),
    );
    let poison_entry = entries[1].clone();
    wait_delivery(&shop, &poison_entry, 5);
    wait_for(WAIT, "only the poison pending", || {
        (pending(&shop, "events:payments", "order") == [poison_entry.clone()]).then_some(())
    });
    assert_eq!(
        shop.get_order(poison_id).json()["status"],
        "PENDING_PAYMENT"
    );

    // Redis takes dead letters again: the next delivery moves it there.
    shop.cli(&["DEL", "dead:payments:order"]);
    redeliver(&shop, "payments", "order", &poison_entry, 6);
    let dead = wait_for(WAIT, "the dead letter", || {
        receiver_dead(&shop, "payments", "order").pop()
    });
    assert_eq!(dead["aggregate_id"], poison_id, "{dead}");
    assert!(pending(&shop, "events:payments", "order").is_empty());
}

/// An `OrderPaid` the stock receiver fails to apply five times is dead-lettered; the TTL sweep,
/// run past the reservation's expiry and grace, keeps the paid units (an alert) and another
/// buyer cannot have them; replayed, the message sells them.
#[test]
fn a_dead_lettered_order_paid_keeps_its_units_from_the_ttl_sweep_until_replayed() {
    let shop = Shop::boot_without_cron();
    product(&shop, "HOLD-1", 2);
    let o = shop.create_order("hold-1", "HOLD-1", 2);
    let id = o["order_id"].as_str().unwrap();
    let rid = shop.reservation_of(&o);
    // Selling fails at the stock context: the product's key is of the wrong type.
    let pkey = "stock:product:HOLD-1";
    shop.cli(&["RENAME", pkey, "saved:HOLD-1"]);
    shop.cli(&["SET", pkey, "broken"]);
    paid(&shop, "evt_hold_1", &o);
    shop.wait_order(id, WAIT, is_status("PAID"));
    let entry = wait_for(WAIT, "OrderPaid handed to the stock receiver", || {
        pending(&shop, "events:orders", "stock").pop()
    });
    wait_delivery(&shop, &entry, 1);
    for n in 2..=5 {
        redeliver(&shop, "orders", "stock", &entry, n);
    }
    let dead = wait_for(WAIT, "the dead letter", || {
        receiver_dead(&shop, "orders", "stock").pop()
    });
    assert_eq!(dead["type"], "OrderPaid", "{dead}");
    shop.cli(&["DEL", pkey]);
    shop.cli(&["RENAME", "saved:HOLD-1", pkey]);
    assert_eq!(shop.levels("HOLD-1"), (0, 2, 0));

    // The reservation's expiry and the sweep's grace are long past; the stock receiver sweeps.
    let past = ((unix_now() - 3600) * 1000).to_string();
    let rkey = format!("stock:reservation:{rid}");
    shop.cli(&["HSET", &rkey, "expires_at", &past]);
    shop.cli(&["ZADD", "stock:reservations:expiries", &past, &rid]);
    // Each wake-up of the stock receiver logs one `stock-events:` line after its sweep.
    let sweeps = |log: &str| log.matches("stock-events: read").count();
    let before = sweeps(&shop.app.stderr());
    shop.compensator_run();
    wait_for(WAIT, "the stock receiver's sweep", || {
        (sweeps(&shop.app.stderr()) > before).then_some(())
    });
    assert_eq!(shop.levels("HOLD-1"), (0, 2, 0), "the paid units stay held");
    let other = json!({"items": [{"sku": "HOLD-1", "quantity": 1}]});
    let refused = shop.order_as("u2", "hold-other", &other);
    assert_problem(&refused, 409, None);
    let alert = "stock: ALERT the TTL sweep kept 1 expired reservation";
    assert!(shop.app.stderr().contains(alert), "{}", shop.app.stderr());
    // It stays on the expiry index, due again (and alerted on again) an hour later.
    let score = shop.cli(&["ZSCORE", "stock:reservations:expiries", &rid]);
    let due_again = score.trim().parse::<i64>().expect("still indexed");
    assert!(
        due_again > unix_now() * 1000 - EXPIRY_GRACE_MS as i64,
        "{score}"
    );

    // The operator replays it: the paid order's units are sold.
    let resp = replay(&shop, dead["id"].as_str().unwrap());
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(shop.wait_levels("HOLD-1", WAIT, |l| l.2 == 2), (0, 0, 2));
    let r = shop.get_reservation(&rid).json();
    assert_eq!(r["status"], "CONFIRMED", "{r}");
}

/// `POST /api/stock/reservations/expire` keeps the same grace past a reservation's expiry as the
/// stock receiver's sweep: just past the expiry nothing is released, past the grace it is.
#[test]
fn the_expire_route_waits_the_same_grace_as_the_receivers_sweep() {
    let shop = Shop::boot_without_cron();
    product(&shop, "GRACE-1", 3);
    let r = shop.reserve(&json!({"reservation_id": "grace-1",
        "items": [{"sku": "GRACE-1", "quantity": 2}], "ttl_seconds": 1}));
    assert_eq!(r.status, 201, "{}", r.text());
    let expires = r.json()["expires_at"].as_str().unwrap().to_owned();
    let at = |ms: u64| {
        let t = shop_domain::timestamp::Timestamp::parse_rfc3339(&expires).unwrap();
        let later = t.millis() + ms as i64;
        shop_domain::timestamp::Timestamp::from_millis(later)
            .unwrap()
            .to_string()
    };
    let sweep = |now: String| {
        let resp = shop.expire_reservations(Some(&json!({"now": now})), true);
        assert_eq!(resp.status, 200, "{}", resp.text());
        resp.json()["released"].as_i64().unwrap()
    };
    assert_eq!(
        sweep(at(60_000)),
        0,
        "a minute past expiry is within the grace"
    );
    assert_eq!(shop.levels("GRACE-1"), (1, 2, 0));
    assert_eq!(sweep(at(EXPIRY_GRACE_MS + 1)), 1);
    assert_eq!(shop.levels("GRACE-1"), (3, 0, 0));
}

/// Receiver dead letters older than `dead_letter_retention_hours` are dropped by the
/// compensator's run; younger ones stay listed.
#[test]
fn receiver_dead_letters_past_their_retention_are_purged() {
    let mut shop = Shop::boot_without_cron();
    shop.restart_without_cron_with(|b| b.variable("dead_letter_retention_hours", "1"));
    let old = format!("{}-0", (unix_now() - 2 * 3600) * 1000);
    let message = json!({"message_id": "msg_old", "topic": "payments", "type": "PaymentSucceeded",
        "aggregate_id": "ord_x", "seq": 1, "payload": {}, "trace_id": null,
        "created_at": "2026-01-01T00:00:00.000Z"})
    .to_string();
    for id in [old.as_str(), "*"] {
        shop.cli(&[
            "XADD",
            "dead:payments:order",
            id,
            "m",
            &message,
            "error",
            "x",
            "deliveries",
            "5",
            "topic",
            "payments",
            "group",
            "order",
            "source_id",
            "1-0",
        ]);
    }
    shop.cli(&["SADD", "dead:index", "dead:payments:order"]);
    assert_eq!(receiver_dead(&shop, "payments", "order").len(), 2);
    let run = shop.compensator_run();
    assert_eq!(run["purged_dead_letters"], 1, "{run}");
    let left = receiver_dead(&shop, "payments", "order");
    assert_eq!(left.len(), 1, "{left:?}");
    assert_ne!(left[0]["id"], format!("rcv:payments:order:{old}"));
}

/// The same under the real Spin CLI (its Redis trigger, router and outbound Redis): a payment
/// the order receiver fails five times is dead-lettered, listed under its `rcv:` id (colons in
/// the path segment), replayed once (the order is PAID), and a second replay is 404.
#[test]
fn under_real_spin_a_receiver_dead_letter_is_listed_and_replayed_once() {
    let Some(shop) = Shop::boot_real_spin() else {
        return;
    };
    let (o, dead) = payment_dead_lettered(&shop, "DLS-1", "refuse_dls_1");
    let id = o["order_id"].as_str().unwrap();
    assert_eq!(dead["deliveries"], 5, "{dead}");
    shop.sql("DROP TRIGGER refuse_dls_1");
    let rid = dead["id"].as_str().unwrap();
    let resp = replay(&shop, rid);
    assert_eq!(resp.status, 200, "{}", resp.text());
    shop.wait_order(id, WAIT, is_status("PAID"));
    assert_problem(&replay(&shop, rid), 404, None);
    // The compensator's run (retention of receiver dead letters included) under Spin too.
    let run = shop.compensator_run();
    assert_eq!(run["errors"], json!([]), "{run}");
    assert_eq!(run["purged_dead_letters"], 0, "{run}");
}

/// Messages the contract cannot read end as dead letters at their first delivery, with the
/// reason, and change nothing: an unknown kind on `payments` (order group), a payload that does
/// not fit its type (a `PaymentSucceeded` whose amount is not a number), an entry that is not an
/// envelope, and an unknown kind on `orders` (stock group).
#[test]
fn an_unknown_kind_and_a_malformed_payload_end_as_dead_letters_with_the_reason() {
    let shop = Shop::boot_without_cron();
    product(&shop, "DL-TYPED", 5);
    let o = shop.create_order("dl-typed", "DL-TYPED", 1);
    let id = o["order_id"].as_str().unwrap();
    let envelope = |mid: &str, topic: &str, kind: &str, payload: Value| {
        json!({"message_id": mid, "topic": topic, "type": kind, "aggregate_id": id, "seq": 1,
               "payload": payload, "trace_id": null, "created_at": "2026-01-01T00:00:00Z"})
        .to_string()
    };
    let good = json!({"order_id": id, "payment_intent_id": "pi_typed", "amount": o["total"],
                      "currency": "EUR", "event_id": "evt_typed"});
    let mut bad_amount = good.clone();
    bad_amount["amount"] = json!("lots");
    let sent = [
        envelope("msg_typed_1", "payments", "PaymentTeleported", good.clone()),
        envelope("msg_typed_2", "payments", "PaymentSucceeded", bad_amount),
        "not json".to_owned(),
    ];
    for m in &sent {
        shop.cli(&["XADD", "events:payments", "*", "m", m]);
    }
    let to_stock = envelope(
        "msg_typed_3",
        "orders",
        "OrderShipped",
        json!({"order_id": id}),
    );
    shop.cli(&["XADD", "events:orders", "*", "m", &to_stock]);
    shop.cli(&["PUBLISH", "doorbell:payments", ""]);
    shop.cli(&["PUBLISH", "doorbell:orders", ""]);
    let dead = wait_for(WAIT, "three dead letters of the order group", || {
        let dead = receiver_dead(&shop, "payments", "order");
        (dead.len() == 3).then_some(dead)
    });
    let errors: Vec<&str> = dead
        .iter()
        .map(|d| d["last_error"].as_str().unwrap())
        .collect();
    assert!(
        errors[0].contains("unknown variant `PaymentTeleported`"),
        "{errors:?}"
    );
    assert!(errors[1].contains("invalid type"), "{errors:?}");
    assert!(errors[1].contains("msg_typed_2"), "{errors:?}");
    assert!(errors[2].contains("not an envelope"), "{errors:?}");
    assert!(dead.iter().all(|d| d["deliveries"] == 1), "{dead:?}");
    let stock = wait_for(WAIT, "the stock group's dead letter", || {
        receiver_dead(&shop, "orders", "stock").pop()
    });
    let error = stock["last_error"].as_str().unwrap();
    assert!(error.contains("unknown variant `OrderShipped`"), "{stock}");
    // Nothing was applied: the order is unpaid, no refund was asked for.
    assert!(pending(&shop, "events:payments", "order").is_empty());
    assert_eq!(shop.get_order(id).json()["status"], "PENDING_PAYMENT");
    let written = shop.sql("SELECT COUNT(*) AS n FROM outbox WHERE type != 'OrderCreated'");
    assert_eq!(written[0]["n"], 0);
}

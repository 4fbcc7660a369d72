//! Refunds reach the provider (issue 16 "Refunds"): the refunds receiver (payments context,
//! consumer group `refunds` on the order topic) asks the fake provider (`e2e::provider`, Stripe's
//! `POST /v1/refunds` shape) to refund each `RefundRequired`, exactly once per message through
//! provider failures (500), timeouts (the provider made the refund, the answer came too late)
//! and redelivered messages: every call carries the message's Idempotency-Key, and a message
//! whose refund is recorded sends nothing again.

use std::time::Duration;

use e2e::provider::{FakeProvider, Mishap};
use e2e::{stripe_event, wait_for, Shop, PAYMENT_SECRET_KEY};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

/// The shop against `provider`, its calls bounded to 500 ms, a failed refund due again 100 ms
/// after the call (doubling), without the compensator's cron (this test decides every delivery).
fn shop_against(provider: &FakeProvider) -> Shop {
    Shop::boot_without_cron_with(|b| {
        b.variable("payment_api_base", provider.base())
            .variable("refund_timeout_ms", "500")
            .variable("refund_backoff_ms", "100")
    })
}

/// Delivers the refunds group's pending messages again until the provider received `n` calls
/// (a delivery before the message's next attempt is due leaves it pending: delivered again).
fn redeliver_until_calls(shop: &Shop, provider: &FakeProvider, n: usize) {
    wait_for(WAIT, &format!("{n} calls at the provider"), || {
        if provider.calls().len() >= n {
            return Some(());
        }
        shop.redeliver_pending("orders", "refunds");
        None
    });
}

/// An order of one unit of a new product, cancelled by its customer: a payment for it now
/// requires a refund (`order-cancelled`).
fn cancelled_order(shop: &Shop, sku: &str) -> Value {
    let body = json!({"name": "Mug", "price": 1299, "currency": "EUR", "stock": 5});
    let resp = shop.put_product(sku, &body);
    assert!(resp.status == 200 || resp.status == 201, "{}", resp.text());
    let o = shop.create_order(&sku.to_lowercase(), sku, 1);
    let resp = shop.cancel("u1", o["order_id"].as_str().unwrap());
    assert_eq!(resp.status, 200, "{}", resp.text());
    o
}

/// The provider's `payment_intent.succeeded` for `order`, in full.
fn pay(shop: &Shop, event_id: &str, order: &Value) {
    let id = order["order_id"].as_str().unwrap();
    let total = order["total"].as_i64().unwrap();
    let event = stripe_event(event_id, "payment_intent.succeeded", id, total, "eur");
    let resp = shop.webhook(&event);
    assert_eq!(resp.status, 200, "{}", resp.text());
}

/// Waits until the provider received `n` calls.
fn calls(provider: &FakeProvider, n: usize) {
    wait_for(WAIT, &format!("{n} calls at the provider"), || {
        (provider.calls().len() >= n).then_some(())
    });
}

/// The refunds recorded by the payments context.
fn recorded(shop: &Shop) -> Vec<Value> {
    shop.sql_in("payments", "SELECT * FROM refunds")
}

#[test]
fn a_refund_is_made_once_through_provider_failures_timeouts_and_redeliveries() {
    let provider = FakeProvider::start();
    // The first call fails, the second makes the refund but answers after the caller gave up.
    provider.then(&[Mishap::Fail, Mishap::Stall(Duration::from_millis(1500))]);
    let shop = shop_against(&provider);
    let o = cancelled_order(&shop, "RF-1");
    let id = o["order_id"].as_str().unwrap();
    pay(&shop, "evt_rf_1", &o);
    calls(&provider, 1);
    assert_eq!(provider.calls()[0].status, 500);
    // Failed: the message stays pending for the group; taken again once due, it meets the stall.
    redeliver_until_calls(&shop, &provider, 2);
    assert_eq!(
        provider.refunds().len(),
        1,
        "the stalled call made the refund"
    );
    // Timed out: pending again; the third call gets the refund already made.
    std::thread::sleep(Duration::from_millis(1600));
    redeliver_until_calls(&shop, &provider, 3);
    let row = wait_for(WAIT, "the refund recorded", || recorded(&shop).pop());
    assert_eq!(row["order_id"], id);
    assert_eq!(row["reason"], "order-cancelled");
    assert_eq!(row["refund_id"], "re_fake_1");
    assert_eq!(row["amount"], o["total"]);
    // The same message delivered again (appended once more) sends nothing.
    let env = wait_for(WAIT, "the RefundRequired entry", || {
        let out = shop.cli(&["XRANGE", "events:orders", "-", "+"]);
        out.lines()
            .find(|l| l.contains("RefundRequired"))
            .map(str::to_owned)
    });
    shop.cli(&["XADD", "events:orders", "*", "m", &env]);
    shop.cli(&["PUBLISH", "doorbell:orders", ""]);
    shop.wait_group_caught_up("events:orders", "refunds", "", WAIT);
    assert!(shop.redeliver_pending("orders", "refunds").is_empty());
    shop.wait_group_caught_up("events:orders", "refunds", "", WAIT);

    let calls = provider.calls();
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert_eq!(provider.refunds().len(), 1, "exactly one refund");
    let key = calls[0]
        .idempotency_key
        .clone()
        .expect("an Idempotency-Key");
    assert!(key.starts_with("refund-msg_"), "{key}");
    let bearer = format!("Bearer {PAYMENT_SECRET_KEY}");
    for c in &calls {
        assert_eq!(c.path, "/v1/refunds");
        assert_eq!(c.idempotency_key.as_deref(), Some(key.as_str()));
        assert_eq!(c.authorization.as_deref(), Some(bearer.as_str()));
        let want = format!("payment_intent=pi_{id}&amount={}", o["total"]);
        assert_eq!(c.body, want);
    }
    assert_eq!(recorded(&shop).len(), 1);

    // The order says why its money goes back; the provider's `charge.refunded` makes it REFUNDED.
    assert_eq!(
        shop.get_order(id).json()["refund_reason"],
        "order-cancelled"
    );
    let resp = shop.webhook(&charge_refunded("evt_rf_1_refunded", &o));
    assert_eq!(resp.status, 200, "{}", resp.text());
    let order = shop.wait_order(id, WAIT, |o| o["status"] == "REFUNDED");
    assert_eq!(order["refund_reason"], "order-cancelled");
    let payment = shop.sql_in("payments", "SELECT status FROM payments");
    assert_eq!(payment[0]["status"], "REFUNDED");
}

/// The provider's `charge.refunded` for `order`'s payment, refunded in full.
fn charge_refunded(event_id: &str, order: &Value) -> Value {
    let id = order["order_id"].as_str().unwrap();
    let total = order["total"].as_i64().unwrap();
    e2e::charge_refunded(event_id, id, &format!("pi_{id}"), total)
}

/// The provider's `payment_intent.succeeded` of payment `intent` for order `id`.
fn pay_with(shop: &Shop, event_id: &str, id: &str, intent: &str, amount: i64) {
    let mut event = stripe_event(event_id, "payment_intent.succeeded", id, amount, "eur");
    event["data"]["object"]["id"] = json!(intent);
    let resp = shop.webhook(&event);
    assert_eq!(resp.status, 200, "{}", resp.text());
}

/// A new product `sku` (EUR 20.00, 5 units) and a coupon `code` (5.00 off, one redemption);
/// alice's order of one unit with it, PENDING_PAYMENT.
fn order_with_coupon(shop: &Shop, sku: &str, code: &str) -> Value {
    let product = json!({"name": "Mug", "price": 2000, "currency": "EUR", "stock": 5});
    let resp = shop.put_product(sku, &product);
    assert!(resp.status == 200 || resp.status == 201, "{}", resp.text());
    let coupon = json!({"currency": "EUR", "amount_off": 500, "max_redemptions": 1});
    let resp = shop.put_coupon(code, &coupon);
    assert!(resp.status == 200 || resp.status == 201, "{}", resp.text());
    let body = json!({"items": [{"sku": sku, "quantity": 1}], "coupon_code": code});
    let resp = shop.order_as("alice", &format!("k-{sku}"), &body);
    assert_eq!(resp.status, 201, "{}", resp.text());
    resp.json()
}

fn available(shop: &Shop, sku: &str) -> i64 {
    shop.get_product(sku).json()["available"].as_i64().unwrap()
}

/// Issue 16's e2e: a payment of the wrong amount for an unpaid order is refunded once at the
/// provider; its `charge.refunded` makes the order REFUNDED (from PENDING_PAYMENT), which
/// gives its unit back to the product and cancels its coupon's redemption (capacity back).
#[test]
fn a_mismatched_payment_is_refunded_once_and_the_order_ends_refunded_with_its_stock_back() {
    let provider = FakeProvider::start();
    let shop = shop_against(&provider);
    let o = order_with_coupon(&shop, "RF-MM", "RFMM");
    let id = o["order_id"].as_str().unwrap();
    assert_eq!(o["total"], 1500, "{o}");
    assert_eq!(available(&shop, "RF-MM"), 4);
    let intent = format!("pi_{id}_short");
    pay_with(&shop, "evt_rf_mm", id, &intent, 1400);

    let row = wait_for(WAIT, "the refund recorded", || recorded(&shop).pop());
    assert_eq!(row["reason"], "amount-mismatch");
    assert_eq!(row["amount"], 1400);
    let refunds = provider.refunds();
    assert_eq!(refunds.len(), 1, "{refunds:?}");
    assert_eq!(
        refunds[0].body,
        format!("payment_intent={intent}&amount=1400")
    );
    let order = shop.get_order(id).json();
    assert_eq!(order["status"], "PENDING_PAYMENT", "{order}");
    assert_eq!(order["refund_reason"], "amount-mismatch");

    let event = e2e::charge_refunded("evt_rf_mm_refunded", id, &intent, 1400);
    let resp = shop.webhook(&event);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let order = shop.wait_order(id, WAIT, |o| o["status"] == "REFUNDED");
    assert_eq!(order["refund_reason"], "amount-mismatch");
    wait_for(WAIT, "the unit back in available", || {
        (available(&shop, "RF-MM") == 5).then_some(())
    });
    shop.wait_redemption("RFMM", id, "CANCELLED", WAIT);
    assert_eq!(shop.coupon_usage("RFMM"), (0, 0));
    assert_eq!(provider.refunds().len(), 1, "exactly one refund");
}

/// A mismatched payment, then the right one before the refund came back: the order is PAID;
/// the old payment's `charge.refunded` changes that payment only, the order stays PAID with its
/// unit sold and its coupon confirmed.
#[test]
fn the_refund_of_a_mismatched_payment_leaves_an_order_paid_meanwhile_paid() {
    let provider = FakeProvider::start();
    let shop = shop_against(&provider);
    let o = order_with_coupon(&shop, "RF-PM", "RFPM");
    let id = o["order_id"].as_str().unwrap();
    let short = format!("pi_{id}_short");
    pay_with(&shop, "evt_rf_pm_short", id, &short, 1400);
    wait_for(WAIT, "the refund recorded", || recorded(&shop).pop());
    pay_with(&shop, "evt_rf_pm_right", id, &format!("pi_{id}"), 1500);
    shop.wait_order(id, WAIT, |o| o["status"] == "PAID");
    shop.wait_redemption("RFPM", id, "CONFIRMED", WAIT);

    let event = e2e::charge_refunded("evt_rf_pm_refunded", id, &short, 1400);
    let resp = shop.webhook(&event);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let query = format!("SELECT status FROM payments WHERE payment_intent_id = '{short}'");
    wait_for(WAIT, "the old payment REFUNDED", || {
        let rows = shop.sql_in("payments", &query);
        (rows.first().map(|r| r["status"].clone()) == Some(json!("REFUNDED"))).then_some(())
    });
    // The order context has applied the refund message once its group caught up.
    shop.wait_group_caught_up("events:payments", "order", "PaymentRefunded", WAIT);
    let order = shop.get_order(id).json();
    assert_eq!(order["status"], "PAID", "{order}");
    assert_eq!(available(&shop, "RF-PM"), 4);
    assert_eq!(shop.redemption("RFPM", id)["status"], "CONFIRMED");
    assert_eq!(provider.refunds().len(), 1);
}

/// A provider that keeps failing: the message is retried, then dead-lettered with the
/// provider's answer, visible in ops; no refund was made.
#[test]
fn a_refund_the_provider_keeps_refusing_ends_as_a_dead_letter() {
    let provider = FakeProvider::start();
    provider.then(&[Mishap::Fail; 5]);
    let shop = shop_against(&provider);
    let o = cancelled_order(&shop, "RF-2");
    pay(&shop, "evt_rf_2", &o);
    calls(&provider, 1);
    redeliver_until_calls(&shop, &provider, 5);
    let dead = refunds_dead_letter(&shop);
    assert_eq!(dead["type"], "RefundRequired", "{dead}");
    let error = dead["last_error"].as_str().unwrap();
    assert!(error.contains("the provider answered 500"), "{dead}");
    assert!(provider.refunds().is_empty());
    assert!(recorded(&shop).is_empty());
}

/// The refunds group's dead letter, as ops lists it.
fn refunds_dead_letter(shop: &Shop) -> Value {
    let (k, v) = e2e::admin_auth();
    wait_for(WAIT, "the dead letter", || {
        let resp = shop
            .app
            .send("GET", "/api/ops/dead-letters", &[(k, &v)], None)
            .unwrap();
        let all = resp.json()["dead_letters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        all.into_iter().find(|d| d["group"] == "refunds")
    })
}

/// Failed refunds back off (issue 16 "Failures retry with backoff"), every delivery the test's
/// own run of the refunds receiver: after failed call n the next is due the call's timeout plus
/// the backoff doubled n - 1 times; a delivery before that calls nothing and leaves the message
/// pending (not counted against it); once due it calls again; the fifth failed call
/// dead-letters the message at once. Due times are made due by the test, not waited for.
#[test]
fn failed_refunds_back_off_doubling_per_attempt_then_end_as_a_dead_letter() {
    let provider = FakeProvider::start();
    provider.then(&[Mishap::Fail; 5]);
    let shop = Shop::boot_without_receivers_with(|b| {
        b.variable("payment_api_base", provider.base())
            .variable("refund_timeout_ms", "500")
            .variable("refund_backoff_ms", "60000")
    });
    let o = cancelled_order(&shop, "RF-BO");
    pay(&shop, "evt_rf_bo", &o);
    let orders = shop.post_internal("/api/orders/events/drain");
    assert_eq!(orders.status, 200, "{}", orders.text());
    let run = || {
        shop.redeliver_pending("orders", "refunds");
        let resp = shop.post_internal("/api/payments/refunds/drain");
        assert_eq!(resp.status, 200, "{}", resp.text());
        resp.json()
    };
    let attempts = "SELECT attempts, attempted_ms, next_attempt_ms FROM refund_attempts";
    let mut waits = Vec::new();
    for n in 1..=4 {
        let failed = run();
        assert_eq!(
            (failed["failed"].as_u64(), provider.calls().len()),
            (Some(1), n),
            "{failed}"
        );
        let row = shop
            .sql_in("payments", attempts)
            .pop()
            .expect("an attempts row");
        assert_eq!(row["attempts"], n, "{row}");
        waits
            .push(row["next_attempt_ms"].as_i64().unwrap() - row["attempted_ms"].as_i64().unwrap());
        let early = run();
        assert_eq!(early["deferred"], 1, "not due: left pending, {early}");
        assert_eq!(early["failed"], 0, "{early}");
        assert_eq!(provider.calls().len(), n, "no call before it is due");
        shop.sql_in("payments", "UPDATE refund_attempts SET next_attempt_ms = 0");
    }
    assert_eq!(waits, [60_500, 120_500, 240_500, 480_500]);
    let last = run();
    assert_eq!(last["dead_lettered"], 1, "{last}");
    assert_eq!(provider.calls().len(), 5);
    let dead = refunds_dead_letter(&shop);
    let error = dead["last_error"].as_str().unwrap();
    assert!(error.contains("5 refund calls failed"), "{dead}");
    assert!(error.contains("the provider answered 500"), "{dead}");
    assert_eq!(run()["read"], 0, "acknowledged with its dead letter");
    assert!(provider.refunds().is_empty());
    assert!(recorded(&shop).is_empty());
}

/// Where there is no Redis trigger, `POST /api/payments/refunds/drain` (internal token) runs the
/// refunds receiver: the refund is made once, and a second run sends nothing.
#[test]
fn the_refunds_receiver_runs_over_http_where_there_is_no_redis_trigger() {
    let shop = Shop::boot_without_receivers();
    let provider = e2e::default_provider();
    let o = cancelled_order(&shop, "RF-HTTP");
    let id = o["order_id"].as_str().unwrap();
    pay(&shop, "evt_rf_http", &o);
    let for_this = || {
        let intent = format!("payment_intent=pi_{id}&");
        let refunds = provider.refunds();
        refunds
            .into_iter()
            .filter(|r| r.body.starts_with(&intent))
            .count()
    };
    let path = "/api/payments/refunds/drain";
    e2e::assert_problem(&shop.app.send("POST", path, &[], None).unwrap(), 401, None);
    // The order context turns the payment into a RefundRequired; nothing refunds it by itself.
    let orders = shop.post_internal("/api/orders/events/drain");
    assert_eq!(orders.status, 200, "{}", orders.text());
    assert_eq!(for_this(), 0);
    let run = shop.post_internal(path);
    assert_eq!(run.status, 200, "{}", run.text());
    assert!(
        run.json()["applied"].as_u64().unwrap() >= 1,
        "{}",
        run.text()
    );
    assert_eq!(for_this(), 1);
    assert_eq!(recorded(&shop).len(), 1);
    let again = shop.post_internal(path);
    assert_eq!(again.json()["read"], 0, "{}", again.text());
    assert_eq!(for_this(), 1);
}

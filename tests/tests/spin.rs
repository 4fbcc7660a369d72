//! The same spin.toml and .wasm files under the real Spin CLI (4.0.2 with the trigger-cron
//! plugin), not only under our host: what passes only under our host is not done. The CLI comes
//! from `SPIN_BIN` or the PATH (`./scripts/test.sh` installs it from `../shared/spin`); without
//! one the test prints SKIPPED with the reason, and `./scripts/test.sh` says so at the end.

use std::time::Duration;

use e2e::{stripe_event, Shop};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn real_spin_serves_health_pays_orders_and_runs_the_compensator_tick() {
    let Some(shop) = Shop::boot_real_spin() else {
        return;
    };
    for c in [
        "order",
        "stock",
        "coupon",
        "payment-callback",
        "compensator",
    ] {
        let resp = shop
            .app
            .get(&format!("/api/health/{c}"))
            .expect("GET health");
        assert_eq!(resp.status, 200, "{c}: {}", resp.text());
        let checks = resp.json()["checks"].clone();
        assert!(
            checks.as_object().unwrap().values().all(|v| v == "ok"),
            "{c}: {checks}"
        );
    }

    // create -> pay -> PAID with the stock sold; the same webhook again changes nothing.
    let put = shop.put_product(
        "SPIN-1",
        &json!({"name": "Mug", "price": 1299, "currency": "EUR", "stock": 5}),
    );
    assert!(put.status == 200 || put.status == 201, "{}", put.text());
    let o = shop.create_order("spin-1", "SPIN-1", 2);
    let id = o["order_id"].as_str().unwrap();
    let event = stripe_event(
        "evt_spin_1",
        "payment_intent.succeeded",
        id,
        2 * 1299,
        "eur",
    );
    for _ in 0..2 {
        let resp = shop.webhook(&event);
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
    let paid = shop.wait_order(id, WAIT, |o| o["status"] == "PAID");
    assert_eq!(paid["version"], 2);
    assert_eq!(shop.wait_levels("SPIN-1", WAIT, |l| l.2 == 2), (3, 0, 2));
    assert_eq!(
        shop.sql_in("payments", "SELECT COUNT(*) AS n FROM inbox")[0]["n"],
        1
    );

    // One compensator tick (the cron plugin, every 15 s) rings the doorbells; the order sweep
    // expires an unpaid order past its deadline and the stock comes back.
    let unpaid = shop.create_order("spin-2", "SPIN-1", 1);
    let uid = unpaid["order_id"].as_str().unwrap();
    assert_eq!(shop.levels("SPIN-1"), (2, 1, 2));
    shop.sql(&format!(
        "UPDATE orders SET expires_ms = 0 WHERE order_id = '{uid}'"
    ));
    shop.wait_order(uid, WAIT, |o| o["status"] == "EXPIRED");
    assert_eq!(shop.wait_levels("SPIN-1", WAIT, |l| l.1 == 0), (3, 0, 2));

    // A payment that reaches stock after its reservation was released, with the units gone
    // meanwhile: stock (Redis trigger) tells the order context on `events:stock`, and the next
    // tick's ring makes order-events cancel the order and require the refund.
    let late = shop.create_order("spin-3", "SPIN-1", 1);
    let lid = late["order_id"].as_str().unwrap();
    shop.release_reservation_of(&late);
    let shrink = json!({"adjustment_id": "spin-shrink", "delta": -3, "reason": "count"});
    assert_eq!(shop.adjust_stock("SPIN-1", &shrink).status, 201);
    let event = stripe_event("evt_spin_3", "payment_intent.succeeded", lid, 1299, "eur");
    assert_eq!(shop.webhook(&event).status, 200);
    let cancelled = shop.wait_order(lid, WAIT, |o| o["status"] == "CANCELLED");
    assert_eq!(cancelled["version"], 3, "paid, then cancelled: {cancelled}");
    let refund = shop.sql(
        "SELECT json_extract(payload, '$.reason') AS reason FROM outbox \
         WHERE type = 'RefundRequired'",
    );
    assert_eq!(refund, vec![json!({"reason": "out-of-stock"})]);
    // Its OrderCancelled, once stock-events has taken it, releases nothing: nothing was held.
    shop.wait_stock_took("OrderCancelled", lid, WAIT);
    assert_eq!(
        shop.levels("SPIN-1"),
        (0, 0, 2),
        "nothing sold, nothing released"
    );
}

/// Issue 13 §3 under the real Spin: the components stop reading a body at their route's limit
/// (they stream the wasi:http incoming body themselves), so an oversized chunked body is 413
/// while the client is still sending, an anonymous one is 401 before it is read, and a body at
/// the limit still works.
#[test]
fn real_spin_caps_bodies_while_they_are_read() {
    let Some(shop) = Shop::boot_real_spin() else {
        return;
    };
    const HUGE: usize = 64 * 1024 * 1024;
    let chunk = vec![b'x'; 64 * 1024];
    let (k, v) = e2e::customer_auth("u");
    let headers = [(k, v.as_str()), ("idempotency-key", "spin-huge")];
    let answer = e2e::send_streaming(
        &shop.app.base_url,
        "POST",
        "/api/orders",
        &headers,
        &chunk,
        HUGE,
    );
    assert_eq!(answer.status, 413, "{}", answer.body);
    assert!(!answer.body_finished, "answered only after the whole body");
    let anonymous = [("idempotency-key", "spin-anon")];
    let answer = e2e::send_streaming(
        &shop.app.base_url,
        "POST",
        "/api/orders",
        &anonymous,
        &chunk,
        HUGE,
    );
    assert_eq!(answer.status, 401, "{}", answer.body);
    assert!(!answer.body_finished, "answered only after the whole body");

    let product = json!({"name": "At the limit", "price": 100, "currency": "EUR", "stock": 1});
    let mut at_limit = serde_json::to_vec(&product).unwrap();
    at_limit.resize(8 * 1024, b' ');
    let (k, v) = e2e::admin_auth();
    let put = shop
        .app
        .send(
            "PUT",
            "/api/products/SPIN-LIMIT",
            &[(k, &v)],
            Some(&at_limit),
        )
        .expect("PUT");
    assert_eq!(put.status, 200, "{}", put.text());
}

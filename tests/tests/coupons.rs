//! Coupons end to end (the real coupon component, its SQLite file): an admin defines them, and
//! the shop's components redeem them by TCC (try / confirm / cancel), idempotent at every step,
//! in any order, and never past a coupon's capacity under concurrency.

use std::sync::{Arc, Barrier};

use e2e::{admin_auth, assert_problem, internal_auth, Shop};
use serde_json::{json, Value};

fn ten_off(shop: &Shop, code: &str, extra: Value) {
    let mut body = json!({"amount_off": 1000, "currency": "EUR"});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let resp = shop.put_coupon(code, &body);
    assert_eq!(resp.status, 201, "{}", resp.text());
}

fn attempt(id: &str, user: &str, subtotal: i64) -> Value {
    json!({"redemption_id": id, "user_id": user, "subtotal": subtotal, "currency": "EUR"})
}

#[test]
fn an_admin_defines_coupons_and_every_bad_field_is_named() {
    let shop = Shop::boot_without_cron();
    let body = json!({"percent_off": 15, "min_subtotal": 5000, "currency": "EUR",
                      "max_redemptions": 100, "per_customer": 2,
                      "starts_at": "2020-01-01T00:00:00Z", "ends_at": "2100-01-01T00:00:00Z"});
    let created = shop.put_coupon("SPRING15", &body);
    assert_eq!(created.status, 201, "{}", created.text());
    let again = shop.put_coupon("SPRING15", &body);
    assert_eq!(again.status, 200, "replaced");
    let got = shop.get_coupon("SPRING15").json();
    assert_eq!(
        got,
        json!({"code": "SPRING15", "percent_off": 15, "currency": "EUR", "min_subtotal": 5000,
               "max_redemptions": 100, "per_customer": 2,
               "starts_at": "2020-01-01T00:00:00.000Z", "ends_at": "2100-01-01T00:00:00.000Z",
               "held": 0, "confirmed": 0})
    );

    for (bad, field) in [
        (json!({}), "currency"),
        (json!({"currency": "EUR"}), "percent_off"),
        (json!({"percent_off": 0, "currency": "EUR"}), "percent_off"),
        (
            json!({"percent_off": 10, "amount_off": 100, "currency": "EUR"}),
            "percent_off",
        ),
        (json!({"percent_off": 10}), "currency"),
        (json!({"amount_off": 100, "currency": "euro"}), "currency"),
        (
            json!({"amount_off": 9007199254740992i64, "currency": "EUR"}),
            "amount_off",
        ),
        (
            json!({"percent_off": 10, "currency": "EUR", "max_redemptions": 0}),
            "max_redemptions",
        ),
        (
            json!({"percent_off": 10, "currency": "EUR", "per_customer": "2"}),
            "per_customer",
        ),
        (
            json!({"percent_off": 10, "currency": "EUR", "starts_at": "tomorrow"}),
            "starts_at",
        ),
        (
            json!({"percent_off": 10, "currency": "EUR", "starts_at": "2030-01-01T00:00:00Z",
                "ends_at": "2020-01-01T00:00:00Z"}),
            "ends_at",
        ),
    ] {
        let resp = shop.put_coupon("BAD", &bad);
        assert_problem(&resp, 422, Some(field));
    }
    assert_problem(&shop.put_coupon("no spaces", &body), 422, Some("code"));
    assert_eq!(shop.get_coupon("BAD").status, 404, "nothing stored");

    // Admin routes need the admin token; the TCC steps the internal token.
    let (ik, iv) = internal_auth();
    for method in ["GET", "PUT"] {
        let as_internal = shop
            .app
            .send_json(method, "/api/coupons/SPRING15", &[(ik, &iv)], &body)
            .unwrap();
        assert_problem(&as_internal, 401, None);
    }
    let (ak, av) = admin_auth();
    for (method, path) in [
        ("POST", "/api/coupons/SPRING15/redemptions"),
        ("GET", "/api/coupons/SPRING15/redemptions/ord_1"),
        ("POST", "/api/coupons/SPRING15/redemptions/ord_1/confirm"),
        ("POST", "/api/coupons/SPRING15/redemptions/ord_1/cancel"),
    ] {
        let body = attempt("ord_1", "u1", 9000);
        for headers in [vec![], vec![(ak, av.as_str())]] {
            let resp = shop.app.send_json(method, path, &headers, &body).unwrap();
            let p = assert_problem(&resp, 401, None);
            assert_eq!(p["credential"], "internal token", "{method} {path}");
        }
    }
    assert_eq!(shop.get_coupon("SPRING15").json()["held"], 0);
}

#[test]
fn try_confirm_cancel_are_idempotent_and_a_late_try_after_its_cancel_is_refused() {
    let shop = Shop::boot_without_cron();
    ten_off(&shop, "TEN", json!({"per_customer": 5}));

    let held = shop.try_coupon("TEN", &attempt("ord_a", "u1", 2599));
    assert_eq!(held.status, 201, "{}", held.text());
    assert_eq!(
        held.json(),
        json!({"code": "TEN", "redemption_id": "ord_a", "status": "HELD", "user_id": "u1",
               "subtotal": 2599, "discount": 1000, "currency": "EUR"})
    );
    let replay = shop.try_coupon("TEN", &attempt("ord_a", "u1", 2599));
    assert_eq!(replay.status, 200);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(replay.json(), held.json());
    let reused = shop.try_coupon("TEN", &attempt("ord_a", "u1", 3000));
    let p = assert_problem(&reused, 422, Some("redemption_id"));
    assert_eq!(
        p["type"],
        "https://errors.spin-shop.dev/redemption-id-reused"
    );
    // The rules change after the try: the try again still answers what it held then.
    let cheaper = json!({"amount_off": 100, "currency": "EUR", "per_customer": 5});
    assert_eq!(shop.put_coupon("TEN", &cheaper).status, 200);
    let replay = shop.try_coupon("TEN", &attempt("ord_a", "u1", 2599));
    assert_eq!(
        (replay.status, replay.json()["discount"].clone()),
        (200, json!(1000))
    );

    // Confirm twice: one state change; a cancel after it is refused.
    for _ in 0..2 {
        let c = shop.settle_coupon("TEN", "ord_a", "confirm");
        assert_eq!(c.status, 200, "{}", c.text());
        assert_eq!(c.json()["status"], "CONFIRMED");
    }
    let p = assert_problem(&shop.settle_coupon("TEN", "ord_a", "cancel"), 409, None);
    assert_eq!(p["redemption_status"], "CONFIRMED", "{p}");

    // Cancel of a held one, twice; then it cannot be confirmed.
    assert_eq!(
        shop.try_coupon("TEN", &attempt("ord_b", "u1", 5000)).status,
        201
    );
    for _ in 0..2 {
        let c = shop.settle_coupon("TEN", "ord_b", "cancel");
        assert_eq!(c.json()["status"], "CANCELLED", "{}", c.text());
    }
    assert_problem(&shop.settle_coupon("TEN", "ord_b", "confirm"), 409, None);

    // A cancel that overtakes its try: recorded, and the try that arrives later holds nothing.
    let empty = shop.settle_coupon("TEN", "ord_c", "cancel");
    assert_eq!(empty.status, 200, "{}", empty.text());
    assert_eq!(
        empty.json(),
        json!({"code": "TEN", "redemption_id": "ord_c", "status": "CANCELLED"})
    );
    let late = shop.try_coupon("TEN", &attempt("ord_c", "u1", 5000));
    assert_eq!(
        assert_problem(&late, 409, None)["redemption_status"],
        "CANCELLED"
    );
    // Confirming what was never tried is 404, and so is every step on an unknown coupon.
    assert_problem(&shop.settle_coupon("TEN", "ord_d", "confirm"), 404, None);
    let unknown = shop.try_coupon("NOPE", &attempt("ord_e", "u1", 5000));
    assert_problem(&unknown, 404, None);
    for step in ["confirm", "cancel"] {
        assert_problem(&shop.settle_coupon("NOPE", "ord_e", step), 404, None);
    }

    let usage = shop.get_coupon("TEN").json();
    assert_eq!(
        (usage["held"].clone(), usage["confirmed"].clone()),
        (json!(0), json!(1))
    );
}

#[test]
fn a_coupon_is_refused_outside_its_rules_and_holds_nothing() {
    let shop = Shop::boot_without_cron();
    ten_off(&shop, "MIN", json!({"min_subtotal": 5000}));
    ten_off(&shop, "LATER", json!({"starts_at": "2100-01-01T00:00:00Z"}));
    ten_off(&shop, "OVER", json!({"ends_at": "2020-01-01T00:00:00Z"}));
    let cases = [
        ("MIN", attempt("r1", "u1", 4999), "coupon-minimum"),
        ("LATER", attempt("r2", "u1", 9000), "coupon-not-yet-valid"),
        ("OVER", attempt("r3", "u1", 9000), "coupon-expired"),
        (
            "MIN",
            json!({"redemption_id": "r4", "user_id": "u1", "subtotal": 9000, "currency": "USD"}),
            "coupon-currency",
        ),
    ];
    for (code, body, kind) in cases {
        let p = assert_problem(&shop.try_coupon(code, &body), 409, None);
        assert_eq!(
            p["type"],
            format!("https://errors.spin-shop.dev/{kind}"),
            "{p}"
        );
    }
    for (bad, field) in [
        (
            json!({"user_id": "u1", "subtotal": 1, "currency": "EUR"}),
            "redemption_id",
        ),
        (
            json!({"redemption_id": "a b", "user_id": "u1", "subtotal": 1, "currency": "EUR"}),
            "redemption_id",
        ),
        (
            json!({"redemption_id": "r5", "subtotal": 1, "currency": "EUR"}),
            "user_id",
        ),
        (
            json!({"redemption_id": "r5", "user_id": "u1", "subtotal": -1, "currency": "EUR"}),
            "subtotal",
        ),
        (
            json!({"redemption_id": "r5", "user_id": "u1", "subtotal": 1, "currency": "E"}),
            "currency",
        ),
    ] {
        assert_problem(&shop.try_coupon("MIN", &bad), 422, Some(field));
    }
    for code in ["MIN", "LATER", "OVER"] {
        assert_eq!(shop.get_coupon(code).json()["held"], 0, "{code}");
    }
}

/// 50 customers try the last 10 redemptions at once: exactly 10 hold one, 40 are told it is
/// sold out; cancelled holds free their places; one customer cannot pass their own limit.
#[test]
fn fifty_concurrent_tries_for_ten_redemptions_hold_exactly_ten() {
    let shop = Arc::new(Shop::boot_without_cron());
    ten_off(&shop, "RUSH", json!({"max_redemptions": 10}));
    let start = Arc::new(Barrier::new(50));
    let threads: Vec<_> = (0..50)
        .map(|i| {
            let (shop, start) = (shop.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                let resp = shop.try_coupon(
                    "RUSH",
                    &attempt(&format!("ord_{i}"), &format!("u{i}"), 5000),
                );
                (resp.status, resp.json()["type"].clone())
            })
        })
        .collect();
    let results: Vec<(u16, Value)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let held = results.iter().filter(|(s, _)| *s == 201).count();
    let sold_out = results
        .iter()
        .filter(|(s, t)| *s == 409 && t == "https://errors.spin-shop.dev/coupon-sold-out")
        .count();
    assert_eq!((held, sold_out), (10, 40), "{results:?}");
    assert_eq!(shop.get_coupon("RUSH").json()["held"], 10);

    // Three holds given back: three more customers get one, the next is refused again.
    let holders: Vec<usize> = (0..50).filter(|i| results[*i].0 == 201).collect();
    for i in &holders[..3] {
        assert_eq!(
            shop.settle_coupon("RUSH", &format!("ord_{i}"), "cancel")
                .status,
            200
        );
    }
    let losers: Vec<usize> = (0..50).filter(|i| results[*i].0 != 201).collect();
    for i in &losers[..3] {
        let again = shop.try_coupon(
            "RUSH",
            &attempt(&format!("ord_{i}_2"), &format!("u{i}"), 5000),
        );
        assert_eq!(again.status, 201, "{}", again.text());
    }
    let full = shop.try_coupon("RUSH", &attempt("ord_last", "u_last", 5000));
    assert_problem(&full, 409, None);

    // Per customer (default 1): a second order of the same customer is refused while the first
    // holds it, and allowed once that one is cancelled.
    ten_off(&shop, "ONCE", json!({}));
    assert_eq!(
        shop.try_coupon("ONCE", &attempt("o1", "u1", 5000)).status,
        201
    );
    let twice = assert_problem(
        &shop.try_coupon("ONCE", &attempt("o2", "u1", 5000)),
        409,
        None,
    );
    assert_eq!(
        twice["type"],
        "https://errors.spin-shop.dev/coupon-customer-limit"
    );
    assert_eq!(
        shop.try_coupon("ONCE", &attempt("o3", "u2", 5000)).status,
        201
    );
    shop.settle_coupon("ONCE", "o1", "cancel");
    assert_eq!(
        shop.try_coupon("ONCE", &attempt("o2", "u1", 5000)).status,
        201
    );
}

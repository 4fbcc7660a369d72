//! End to end: the stock component in the real `spin.toml`, served by the host, against a private
//! redis-server. Tests share one app (booted lazily, stopped when the last running test drops
//! it) and keep apart by using their own SKUs and reservation ids.
//!
//! Tests assert behaviour, never timing: expiry is driven by the admin `now` of the expire
//! endpoint or by moving a stored expiry into the past through redis-cli, and the stale-lock
//! cases run the real Lua scripts through redis-cli with an old fencing token.

use std::collections::HashSet;
use std::sync::{Arc, Barrier, Mutex, Weak};
use std::time::{Duration, Instant};

use e2e::{admin_auth, internal_auth, stock_lua as lua, Shop, ADMIN_TOKEN};
use serde_json::{json, Value};
use shop_domain::reservation::EXPIRY_GRACE_MS;
use shop_domain::timestamp::Timestamp;
use testkit::Response;

/// The shared app of this file's tests (a [`Shop`], the shared e2e client).
struct Env(Shop);

impl std::ops::Deref for Env {
    type Target = Shop;
    fn deref(&self) -> &Shop {
        &self.0
    }
}

static ENV: Mutex<Weak<Env>> = Mutex::new(Weak::new());

/// The shared app; booted on first use and again if every earlier user already finished.
fn env() -> Arc<Env> {
    let mut slot = ENV.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(env) = slot.upgrade() {
        return env;
    }
    let env = Arc::new(boot());
    *slot = Arc::downgrade(&env);
    env
}

/// A private redis-server and the real spin.toml in the host.
fn boot() -> Env {
    Env(Shop::boot())
}

impl Env {
    fn product(&self, sku: &str, name: &str, price: i64, stock: i64) {
        let resp = self.put_product(
            sku,
            &json!({"name": name, "price": price, "currency": "EUR", "stock": stock}),
        );
        assert_eq!(resp.status, 200, "{}\n{}", resp.text(), self.app.stderr());
    }
}

/// A 4xx/5xx answer must be problem+json with the documented members and the given status.
fn problem(resp: &Response, status: u16) -> Value {
    assert_eq!(resp.status, status, "{}", resp.text());
    assert_eq!(
        resp.header("content-type"),
        Some("application/problem+json"),
        "{}",
        resp.text()
    );
    let b = resp.json();
    for member in ["type", "title", "status", "detail"] {
        assert!(b.get(member).is_some(), "problem without {member}: {b}");
    }
    assert_eq!(b["status"], status, "{b}");
    b
}

#[test]
fn put_and_get_a_product() {
    let env = env();
    let resp = env.put_product(
        "happy-TSHIRT",
        &json!({"name": "Red T-shirt", "price": 1999, "currency": "EUR", "stock": 10}),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let expected = json!({"sku": "happy-TSHIRT", "name": "Red T-shirt", "price": 1999,
        "currency": "EUR", "available": 10, "reserved": 0, "sold": 0});
    assert_eq!(resp.json(), expected);
    let resp = env.get_product("happy-TSHIRT");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(resp.json(), expected);

    // A later PUT changes the catalog fields only: reserved and sold units are untouched, and a
    // `stock` for an existing product is refused (it would overwrite every move since).
    let r = env.reserve(&json!({"reservation_id": "happy-r1",
        "items": [{"sku": "happy-TSHIRT", "quantity": 3}]}));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        env.post_internal("/api/stock/reservations/happy-r1/confirm")
            .status,
        200
    );
    let r = env.reserve(&json!({"reservation_id": "happy-r2",
        "items": [{"sku": "happy-TSHIRT", "quantity": 2}]}));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(env.levels("happy-TSHIRT"), (5, 2, 3));
    for stock in [40, 5, 0] {
        let resp = env.put_product(
            "happy-TSHIRT",
            &json!({"name": "Red T-shirt v2", "price": 2499, "currency": "USD", "stock": stock}),
        );
        let p = problem(&resp, 422);
        assert_eq!(p["field"], "stock", "{p}");
        assert!(
            p["detail"]
                .as_str()
                .unwrap()
                .contains("/api/products/happy-TSHIRT/stock-adjustments"),
            "{p}"
        );
    }
    assert_eq!(
        env.get_product("happy-TSHIRT").json(),
        expected_after(&expected, 5, 2, 3)
    );
    let resp = env.put_product(
        "happy-TSHIRT",
        &json!({"name": "Red T-shirt v2", "price": 2499, "currency": "USD"}),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        resp.json(),
        json!({"sku": "happy-TSHIRT", "name": "Red T-shirt v2", "price": 2499,
            "currency": "USD", "available": 5, "reserved": 2, "sold": 3})
    );
    // The outstanding reservation still settles against the kept buckets.
    assert_eq!(
        env.post_internal("/api/stock/reservations/happy-r2/release")
            .status,
        200
    );
    assert_eq!(env.levels("happy-TSHIRT"), (7, 0, 3));
}

#[test]
fn admin_routes_need_the_bearer_token() {
    let env = env();
    let body = json!({"name": "X", "price": 1, "currency": "EUR", "stock": 1});
    let path = "/api/products/auth-X";
    let none = env.app.send_json("PUT", path, &[], &body).expect("PUT");
    problem(&none, 401);
    let wrong = env
        .app
        .send_json("PUT", path, &[("authorization", "Bearer nope")], &body)
        .expect("PUT");
    problem(&wrong, 401);
    let basic = env
        .app
        .send_json(
            "PUT",
            path,
            &[("authorization", &format!("Basic {ADMIN_TOKEN}"))],
            &body,
        )
        .expect("PUT");
    problem(&basic, 401);
    problem(&env.get_product("auth-X"), 404);
    // Expiring "as of" another instant releases reservations early: admin only.
    problem(
        &env.expire_reservations(Some(&json!({"now": "2030-01-01T00:00:00Z"})), false),
        401,
    );
}

#[test]
fn put_rejects_malformed_products_naming_the_field() {
    let env = env();
    let ok = json!({"name": "Mug", "price": 900, "currency": "EUR", "stock": 4});
    let with = |k: &str, v: Value| with_member(&ok, k, v);
    let without = |k: &str| without_member(&ok, k);
    let cases: Vec<(Value, u16, &str)> = vec![
        (without("name"), 422, "name"),
        (with("name", json!("   ")), 422, "name"),
        (with("name", json!(42)), 422, "name"),
        (without("price"), 422, "price"),
        (with("price", json!(-1)), 422, "price"),
        (with("price", json!(9.99)), 422, "price"),
        (with("price", json!("900")), 422, "price"),
        (without("currency"), 422, "currency"),
        (with("currency", json!("eur")), 422, "currency"),
        (with("currency", json!("EURO")), 422, "currency"),
        (with("stock", json!(-5)), 422, "stock"),
        (with("stock", json!(1_000_000_000_001i64)), 422, "stock"),
        (with("stock", json!("4")), 422, "stock"),
        // Prices stop at 2^53 - 1, the largest integer every JSON client reads exactly.
        (with("price", json!(9_007_199_254_740_992i64)), 422, "price"),
        (with("price", json!(i64::MAX)), 422, "price"),
        (with("price", json!(u64::MAX)), 422, "price"),
        (with("stock", json!(1e300)), 422, "stock"),
        (json!([1, 2]), 400, "body"),
        (json!("text"), 400, "body"),
    ];
    for (body, status, field) in cases {
        let resp = env.put_product("malformed-MUG", &body);
        let p = problem(&resp, status);
        assert_eq!(p["field"], field, "{body} -> {p}");
    }
    let (k, v) = admin_auth();
    for raw in [&b"{"[..], b"", b"not json", b"{\"name\": \"x\",}"] {
        let resp = env
            .app
            .send(
                "PUT",
                "/api/products/malformed-MUG",
                &[(k, &v), ("content-type", "application/json")],
                Some(raw),
            )
            .expect("PUT");
        assert_eq!(problem(&resp, 400)["field"], "body");
    }
    // A SKU outside `A-Z a-z 0-9 - _ .` is refused by name.
    let resp = env.put_product("bad%20sku", &ok);
    assert_eq!(problem(&resp, 422)["field"], "sku");
    problem(&env.get_product("malformed-MUG"), 404);
    assert_eq!(env.put_product("malformed-MUG", &ok).status, 200);

    // The largest price is accepted and read back exactly; stock is optional at creation (0).
    let max = with("price", json!(9_007_199_254_740_991i64));
    let resp = env.put_product("malformed-MAX", &without_stock(&max));
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.json()["price"], json!(9_007_199_254_740_991i64));
    assert_eq!(env.levels("malformed-MAX"), (0, 0, 0));
    let p = problem(
        &env.put_product(
            "malformed-MAX",
            &with("price", json!(9_007_199_254_740_992i64)),
        ),
        422,
    );
    assert_eq!(p["field"], "price");
    assert_eq!(
        env.get_product("malformed-MAX").json()["price"],
        json!(9_007_199_254_740_991i64)
    );
}

fn without_stock(body: &Value) -> Value {
    let mut b = body.clone();
    b.as_object_mut().unwrap().remove("stock");
    b
}

/// `product` with its levels replaced.
fn expected_after(product: &Value, available: i64, reserved: i64, sold: i64) -> Value {
    let mut p = product.clone();
    p["available"] = json!(available);
    p["reserved"] = json!(reserved);
    p["sold"] = json!(sold);
    p
}

#[test]
fn unknown_products_and_routes_are_problem_404s() {
    let env = env();
    let p = problem(&env.get_product("never-created"), 404);
    assert_eq!(p["skus"], json!(["never-created"]));
    problem(&env.get_product("not%20a%20sku"), 404);
    problem(&env.app.get("/api/stock/nothing").expect("GET"), 404);
    problem(&env.get_reservation("nope"), 404);
    problem(
        &env.post_internal("/api/stock/reservations/nope/confirm"),
        404,
    );
    problem(
        &env.post_internal("/api/stock/reservations/nope/release"),
        404,
    );
    let resp = env
        .app
        .send("DELETE", "/api/products/never-created", &[], None)
        .expect("DELETE");
    problem(&resp, 405);
    let resp = env
        .app
        .send("GET", "/api/stock/reservations", &[], None)
        .expect("GET");
    problem(&resp, 405);
}

#[test]
fn reservation_happy_path_snapshots_prices() {
    let env = env();
    env.product("happy-A", "Apple", 150, 10);
    env.product("happy-B", "Banana", 25, 5);
    let resp = env.reserve(&json!({
        "reservation_id": "happy-res-1",
        "items": [{"sku": "happy-A", "quantity": 3}, {"sku": "happy-B", "quantity": 5}],
        "ttl_seconds": 600
    }));
    assert_eq!(resp.status, 201, "{}", resp.text());
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let body = resp.json();
    assert_eq!(body["reservation_id"], "happy-res-1");
    assert_eq!(body["status"], "RESERVED");
    assert_eq!(
        body["items"],
        json!([
            {"sku": "happy-A", "quantity": 3, "unit_price": 150, "currency": "EUR"},
            {"sku": "happy-B", "quantity": 5, "unit_price": 25, "currency": "EUR"}
        ])
    );
    let expires = body["expires_at"].as_str().expect("expires_at string");
    assert!(
        expires.len() == 24 && expires.ends_with('Z') && expires.as_bytes()[10] == b'T',
        "expires_at is RFC 3339 UTC: {expires}"
    );
    assert_eq!(env.levels("happy-A"), (7, 3, 0));
    assert_eq!(env.levels("happy-B"), (0, 5, 0));

    // A later price change does not touch the reservation's snapshot.
    let resp = env.put_product(
        "happy-A",
        &json!({"name": "Apple", "price": 999, "currency": "EUR"}),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(env.levels("happy-A"), (7, 3, 0));
    let resp = env.get_reservation("happy-res-1");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.json(), body);
}

#[test]
fn a_reservation_in_two_currencies_is_refused_and_moves_nothing() {
    let env = env();
    env.put_product(
        "mix-EUR",
        &json!({"name": "E", "price": 100, "currency": "EUR", "stock": 5}),
    );
    env.put_product(
        "mix-USD",
        &json!({"name": "U", "price": 100, "currency": "USD", "stock": 5}),
    );
    let p = problem(
        &env.reserve(&json!({"reservation_id": "mix-1",
            "items": [{"sku": "mix-EUR", "quantity": 1}, {"sku": "mix-USD", "quantity": 1}]})),
        422,
    );
    assert_eq!(
        p["type"], "https://errors.spin-shop.dev/mixed-currencies",
        "{p}"
    );
    assert_eq!(p["skus"], json!(["mix-EUR", "mix-USD"]), "{p}");
    assert_eq!(env.levels("mix-EUR"), (5, 0, 0));
    assert_eq!(env.levels("mix-USD"), (5, 0, 0));
    problem(&env.get_reservation("mix-1"), 404);
}

#[test]
fn reservation_errors() {
    let env = env();
    env.product("err-A", "A", 100, 5);
    env.product("err-B", "B", 100, 1);
    let short = env.reserve(&json!({"reservation_id": "err-short",
        "items": [{"sku": "err-A", "quantity": 5}, {"sku": "err-B", "quantity": 2}]}));
    let p = problem(&short, 409);
    assert_eq!(p["skus"], json!(["err-B"]), "{p}");
    // All or nothing: the line that fitted was not deducted either.
    assert_eq!(env.levels("err-A"), (5, 0, 0));
    assert_eq!(env.levels("err-B"), (1, 0, 0));
    // A short request leaves no reservation behind: the id is still free.
    problem(&env.get_reservation("err-short"), 404);

    let unknown = env.reserve(&json!({"reservation_id": "err-unknown",
        "items": [{"sku": "err-A", "quantity": 1}, {"sku": "err-NOPE", "quantity": 1}]}));
    let p = problem(&unknown, 404);
    assert_eq!(p["skus"], json!(["err-NOPE"]), "{p}");
    assert_eq!(env.levels("err-A"), (5, 0, 0));

    let item = |sku: &str, q: Value| json!({"sku": sku, "quantity": q});
    let req = |items: Value| json!({"reservation_id": "err-x", "items": items});
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            req(json!([item("err-A", json!(0))])),
            422,
            "items[0].quantity",
        ),
        (
            req(json!([item("err-A", json!(1)), item("err-B", json!(-1))])),
            422,
            "items[1].quantity",
        ),
        (
            req(json!([item("err-A", json!(1.5))])),
            422,
            "items[0].quantity",
        ),
        (
            req(json!([item("err-A", json!("2"))])),
            422,
            "items[0].quantity",
        ),
        (
            req(json!([item("err-A", json!(10_000_000_000i64))])),
            422,
            "items[0].quantity",
        ),
        (req(json!([{"sku": "err-A"}])), 422, "items[0].quantity"),
        (req(json!([{"quantity": 1}])), 422, "items[0].sku"),
        (req(json!([item("bad sku", json!(1))])), 422, "items[0].sku"),
        (
            req(json!([item("err-A", json!(1)), item("err-A", json!(1))])),
            422,
            "items[1].sku",
        ),
        (req(json!([])), 422, "items"),
        (req(json!("err-A")), 422, "items"),
        (req(json!([7])), 422, "items[0]"),
        (
            json!({"items": [item("err-A", json!(1))]}),
            422,
            "reservation_id",
        ),
        (
            json!({"reservation_id": 5, "items": [item("err-A", json!(1))]}),
            422,
            "reservation_id",
        ),
        (
            json!({"reservation_id": "a/b", "items": [item("err-A", json!(1))]}),
            422,
            "reservation_id",
        ),
        (
            json!({"reservation_id": "err-x", "items": [item("err-A", json!(1))], "ttl_seconds": 0}),
            422,
            "ttl_seconds",
        ),
        (
            json!({"reservation_id": "err-x", "items": [item("err-A", json!(1))], "ttl_seconds": "60"}),
            422,
            "ttl_seconds",
        ),
        (json!([]), 400, "body"),
        (json!(null), 400, "body"),
    ];
    for (body, status, field) in cases {
        let p = problem(&env.reserve(&body), status);
        assert_eq!(p["field"], field, "{body} -> {p}");
    }
    let resp = env
        .app
        .send(
            "POST",
            "/api/stock/reservations",
            &[
                ("content-type", "application/json"),
                ("authorization", &internal_auth().1),
            ],
            Some(b"{\"reservation_id\": "),
        )
        .expect("POST");
    assert_eq!(problem(&resp, 400)["field"], "body");
    assert_eq!(env.levels("err-A"), (5, 0, 0));
    assert_eq!(env.levels("err-B"), (1, 0, 0));
}

#[test]
fn the_same_reservation_id_never_deducts_twice() {
    let env = env();
    env.product("idem-A", "A", 300, 10);
    let body = json!({"reservation_id": "idem-1", "items": [{"sku": "idem-A", "quantity": 4}]});
    let first = env.reserve(&body);
    assert_eq!(first.status, 201, "{}", first.text());
    let second = env.reserve(&body);
    assert!(
        second.status == 200 || second.status == 201,
        "{}",
        second.text()
    );
    assert_eq!(second.json(), first.json());
    assert_eq!(env.levels("idem-A"), (6, 4, 0));

    // Concurrent retries of one id: still one deduction.
    let body2 = json!({"reservation_id": "idem-2", "items": [{"sku": "idem-A", "quantity": 1}]});
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| s.spawn(|| env.reserve(&body2).status))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 201),
        "{statuses:?}"
    );
    assert_eq!(env.levels("idem-A"), (5, 5, 0));

    // The same id for a different request is refused, and deducts nothing.
    let other = json!({"reservation_id": "idem-1", "items": [{"sku": "idem-A", "quantity": 5}]});
    assert_eq!(
        problem(&env.reserve(&other), 422)["field"],
        "reservation_id"
    );
    assert_eq!(env.levels("idem-A"), (5, 5, 0));
}

#[test]
fn fifty_concurrent_buyers_for_the_last_ten_units() {
    let env = env();
    env.product("flash-LAST", "Last units", 4999, 10);
    let done = std::sync::atomic::AtomicBool::new(false);
    let barrier = Barrier::new(50);
    let (statuses, observed) = std::thread::scope(|s| {
        // A watcher reads the product while buyers race: every snapshot must be consistent.
        let watcher = s.spawn(|| {
            let mut seen = Vec::new();
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                seen.push(env.levels("flash-LAST"));
            }
            seen
        });
        let buyers: Vec<_> = (0..50)
            .map(|i| {
                let (env, barrier) = (&env, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    let resp = env.reserve(&json!({"reservation_id": format!("flash-{i}"),
                        "items": [{"sku": "flash-LAST", "quantity": 1}]}));
                    if resp.status == 409 {
                        assert_eq!(problem(&resp, 409)["skus"], json!(["flash-LAST"]));
                    }
                    resp.status
                })
            })
            .collect();
        let statuses: Vec<u16> = buyers.into_iter().map(|h| h.join().unwrap()).collect();
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        (statuses, watcher.join().unwrap())
    });
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        10,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        40,
        "{statuses:?}"
    );
    assert_eq!(env.levels("flash-LAST"), (0, 10, 0));
    assert!(!observed.is_empty());
    for (a, r, s) in observed {
        assert!(a >= 0, "available went negative: {a}");
        assert_eq!(a + r + s, 10, "inconsistent snapshot {a} {r} {s}");
    }
}

#[test]
fn confirm_and_release_are_idempotent_and_final() {
    let env = env();
    env.product("life-A", "A", 100, 10);
    let reserve = |id: &str, q: i64| {
        let r = env
            .reserve(&json!({"reservation_id": id, "items": [{"sku": "life-A", "quantity": q}]}));
        assert_eq!(r.status, 201, "{}", r.text());
        r.json()
    };
    let created = reserve("life-c", 3);
    let c1 = env.post_internal("/api/stock/reservations/life-c/confirm");
    assert_eq!(c1.status, 200, "{}", c1.text());
    let mut expected = created.clone();
    expected["status"] = json!("CONFIRMED");
    assert_eq!(c1.json(), expected);
    let c2 = env.post_internal("/api/stock/reservations/life-c/confirm");
    assert_eq!(c2.status, 200, "{}", c2.text());
    assert_eq!(c2.json(), expected);
    assert_eq!(env.levels("life-A"), (7, 0, 3));
    let p = problem(
        &env.post_internal("/api/stock/reservations/life-c/release"),
        409,
    );
    assert_eq!(p["reservation_status"], "CONFIRMED", "{p}");
    assert_eq!(env.levels("life-A"), (7, 0, 3));

    reserve("life-r", 2);
    assert_eq!(env.levels("life-A"), (5, 2, 3));
    let r1 = env.post_internal("/api/stock/reservations/life-r/release");
    assert_eq!(r1.status, 200, "{}", r1.text());
    assert_eq!(r1.json()["status"], "RELEASED");
    let r2 = env.post_internal("/api/stock/reservations/life-r/release");
    assert_eq!(r2.status, 200, "{}", r2.text());
    assert_eq!(r2.json(), r1.json());
    assert_eq!(env.levels("life-A"), (7, 0, 3));
    let p = problem(
        &env.post_internal("/api/stock/reservations/life-r/confirm"),
        409,
    );
    assert_eq!(p["reservation_status"], "RELEASED", "{p}");
    assert_eq!(env.levels("life-A"), (7, 0, 3));

    // Retrying the original reservation request after release answers the stored (released)
    // reservation and does not reserve again.
    let again = env.reserve(&json!({"reservation_id": "life-r",
        "items": [{"sku": "life-A", "quantity": 2}]}));
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.json()["status"], "RELEASED");
    assert_eq!(env.levels("life-A"), (7, 0, 3));

    // Concurrent confirms and releases of one reservation: exactly one decision wins.
    reserve("life-race", 4);
    let statuses: Vec<(&str, u16)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..10)
            .map(|i| {
                let action = if i % 2 == 0 { "confirm" } else { "release" };
                let env = &env;
                s.spawn(move || {
                    let path = format!("/api/stock/reservations/life-race/{action}");
                    (action, env.post_internal(&path).status)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok: HashSet<&str> = statuses
        .iter()
        .filter(|(_, s)| *s == 200)
        .map(|(a, _)| *a)
        .collect();
    assert_eq!(ok.len(), 1, "one action wins: {statuses:?}");
    assert!(
        statuses.iter().all(|(_, s)| *s == 200 || *s == 409),
        "{statuses:?}"
    );
    let (a, r, s) = env.levels("life-A");
    assert_eq!((a + r + s, r), (10, 0));
    if ok.contains("confirm") {
        assert_eq!((a, s), (3, 7));
    } else {
        assert_eq!((a, s), (7, 3));
    }
}

#[test]
fn expired_reservations_are_released_once() {
    let env = env();
    env.product("exp-A", "A", 100, 10);
    let mut expiries = Vec::new();
    for i in 0..5 {
        let r = env.reserve(&json!({"reservation_id": format!("exp-{i}"),
            "items": [{"sku": "exp-A", "quantity": 1}], "ttl_seconds": 1}));
        assert_eq!(r.status, 201, "{}", r.text());
        expiries.push(r.json()["expires_at"].as_str().unwrap().to_owned());
    }
    let kept = env.reserve(&json!({"reservation_id": "exp-kept",
        "items": [{"sku": "exp-A", "quantity": 2}], "ttl_seconds": 3600}));
    assert_eq!(kept.status, 201);
    assert_eq!(env.levels("exp-A"), (3, 7, 0));
    let confirmed = env.reserve(&json!({"reservation_id": "exp-confirmed",
        "items": [{"sku": "exp-A", "quantity": 1}], "ttl_seconds": 600}));
    assert_eq!(confirmed.status, 201);
    assert_eq!(
        env.post_internal("/api/stock/reservations/exp-confirmed/confirm")
            .status,
        200
    );
    assert_eq!(env.levels("exp-A"), (2, 7, 1));

    // "Now" = the latest expiry of the 1-second ones plus the sweep's grace: all five are due,
    // the 1-hour one is not. Other tests' reservations live 15 minutes or more (and the cron
    // test runs its own app), so they are not due either; the compensator's cron (server clock)
    // cannot race us here: it waits the same grace.
    let latest = Timestamp::parse_rfc3339(expiries.iter().max().unwrap()).unwrap();
    let now = Timestamp::from_millis(latest.millis() + EXPIRY_GRACE_MS as i64)
        .unwrap()
        .to_string();
    let results: Vec<Response> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|_| s.spawn(|| env.expire_reservations(Some(&json!({"now": now})), true)))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut released = 0;
    for r in &results {
        assert_eq!(r.status, 200, "{}", r.text());
        released += r.json()["released"].as_i64().unwrap();
    }
    assert_eq!(
        released, 5,
        "two concurrent expiries release each reservation once"
    );
    assert_eq!(env.levels("exp-A"), (7, 2, 1));
    for i in 0..5 {
        let r = env.get_reservation(&format!("exp-{i}"));
        assert_eq!(r.json()["status"], "RELEASED");
    }
    // Idempotent: nothing left to release.
    let again = env.expire_reservations(Some(&json!({"now": now})), true);
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.json()["released"], 0);
    assert_eq!(env.levels("exp-A"), (7, 2, 1));
    // An expired reservation cannot be confirmed; releasing it again is a no-op.
    problem(
        &env.post_internal("/api/stock/reservations/exp-0/confirm"),
        409,
    );
    assert_eq!(
        env.post_internal("/api/stock/reservations/exp-0/release")
            .status,
        200
    );
    assert_eq!(env.levels("exp-A"), (7, 2, 1));

    // The compensator's plain call (server clock, no body) needs the admin token it sends.
    problem(&env.expire_reservations(None, false), 401);
    let plain = env.expire_reservations(None, true);
    assert_eq!(plain.status, 200, "{}", plain.text());
    assert_eq!(env.levels("exp-A").1, 2);
    let bad = env.expire_reservations(Some(&json!({"now": "yesterday"})), true);
    assert_eq!(problem(&bad, 422)["field"], "now");

    // Instants far ahead stay exact integers (Lua's tostring would print 2.5e+14); run on keys of
    // this test only, so the other tests' reservations are untouched.
    let out = env.cli(&[
        "EVAL",
        &lua("expire"),
        "1",
        "exp-test:expiries",
        "253402300799999",
        "100",
        "exp-test:reservation:",
        "exp-test:product:",
        "1000",
    ]);
    assert_eq!(out, "OK\n0\n0\n253402300799999\n0");
}

#[test]
fn replaying_a_reservation_past_its_expiry_answers_expired_and_moves_nothing() {
    let env = env();
    env.product("replay-A", "A", 100, 5);
    let body = json!({"reservation_id": "replay-1",
        "items": [{"sku": "replay-A", "quantity": 2}], "ttl_seconds": 3600});
    assert_eq!(env.reserve(&body).status, 201);
    env.cli(&["HSET", "stock:reservation:replay-1", "expires_at", "1000"]);
    let again = env.reserve(&body);
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.json()["status"], "EXPIRED", "{}", again.text());
    assert_eq!(
        env.levels("replay-A"),
        (3, 2, 0),
        "a replay never moves units"
    );
}

#[test]
fn confirming_after_the_expiry_releases_instead() {
    let env = env();
    env.product("late-A", "A", 100, 5);
    let r = env.reserve(&json!({"reservation_id": "late-1",
        "items": [{"sku": "late-A", "quantity": 2}], "ttl_seconds": 3600}));
    assert_eq!(r.status, 201);
    // Move the stored expiry into the past (as if an hour went by before payment arrived).
    env.cli(&["HSET", "stock:reservation:late-1", "expires_at", "1000"]);
    let p = problem(
        &env.post_internal("/api/stock/reservations/late-1/confirm"),
        409,
    );
    assert_eq!(
        p["type"], "https://errors.spin-shop.dev/reservation-expired",
        "{p}"
    );
    assert_eq!(p["reservation_status"], "RELEASED");
    assert_eq!(env.levels("late-A"), (5, 0, 0));
    assert_eq!(
        env.post_internal("/api/stock/reservations/late-1/release")
            .status,
        200
    );
    assert_eq!(env.levels("late-A"), (5, 0, 0));
}

#[test]
fn admin_writes_are_locked_and_fenced() {
    let env = env();
    env.product("lock-A", "A", 100, 10);
    // Writers of an existing product change its catalog fields: the price tells them apart.
    let body = |price: i64| json!({"name": "A", "price": price, "currency": "EUR"});
    let price = || env.get_product("lock-A").json()["price"].as_i64().unwrap();

    // Another writer holds the lock: refused at once, nothing written.
    env.cli(&["SET", "stock:lock:lock-A", "someone-else", "PX", "60000"]);
    let p = problem(&env.put_product("lock-A", &body(99)), 409);
    assert_eq!(p["type"], "https://errors.spin-shop.dev/lock-busy", "{p}");
    assert_eq!(price(), 100);
    // Our lock release never deletes someone else's lock (compare-and-delete).
    assert_eq!(
        env.cli(&[
            "EVAL",
            &lua("lock_release"),
            "1",
            "stock:lock:lock-A",
            "not-the-owner"
        ]),
        "NOT_OWNER"
    );
    assert_eq!(env.cli(&["GET", "stock:lock:lock-A"]), "someone-else");
    env.cli(&["DEL", "stock:lock:lock-A"]);
    assert_eq!(env.put_product("lock-A", &body(11)).status, 200);
    assert_eq!(
        env.cli(&["EXISTS", "stock:lock:lock-A"]),
        "0",
        "lock released after the write"
    );

    // Stale holder, case 1: S takes the lock, pauses past its TTL (we delete the key), a newer
    // writer takes it and writes; S wakes up and writes with its old fencing token: refused.
    let acquire = lua("lock_acquire");
    let stale = env.cli(&[
        "EVAL",
        &acquire,
        "2",
        "stock:lock:lock-A",
        "stock:fence:lock-A",
        "stale-owner",
        "60000",
    ]);
    let stale_fence = stale.lines().nth(1).expect("fence").to_owned();
    assert!(stale.starts_with("OK"), "{stale}");
    env.cli(&["DEL", "stock:lock:lock-A"]);
    assert_eq!(env.put_product("lock-A", &body(7)).status, 200);
    let put = lua("put_product");
    let write = |fence: &str, price: &str| {
        env.cli(&[
            "EVAL",
            &put,
            "2",
            "stock:product:lock-A",
            "stock:fence:lock-A",
            fence,
            "A",
            price,
            "EUR",
            "",
        ])
    };
    assert!(write(&stale_fence, "1000").starts_with("STALE"));
    assert_eq!(price(), 7);

    // Case 2: the newer holder has the lock but has not written yet: the stale write is refused
    // too, because a newer token was issued.
    let old = env.cli(&[
        "EVAL",
        &acquire,
        "2",
        "stock:lock:lock-A",
        "stock:fence:lock-A",
        "old-owner",
        "60000",
    ]);
    let old_fence = old.lines().nth(1).expect("fence").to_owned();
    env.cli(&["DEL", "stock:lock:lock-A"]);
    let new = env.cli(&[
        "EVAL",
        &acquire,
        "2",
        "stock:lock:lock-A",
        "stock:fence:lock-A",
        "new-owner",
        "60000",
    ]);
    let new_fence = new.lines().nth(1).expect("fence").to_owned();
    assert!(new_fence.parse::<i64>().unwrap() > old_fence.parse::<i64>().unwrap());
    assert!(write(&old_fence, "1000").starts_with("STALE"));
    assert_eq!(price(), 7);
    // ...while the current holder's write goes through, once.
    assert!(write(&new_fence, "8").starts_with("OK"));
    assert!(
        write(&new_fence, "9").starts_with("STALE"),
        "a token is used once"
    );
    assert_eq!(price(), 8);
    // No writer, stale or not, ever moved the stock.
    assert_eq!(env.levels("lock-A"), (10, 0, 0));
    env.cli(&["DEL", "stock:lock:lock-A"]);

    // Two writers racing over HTTP: each round, every answer is 200 or 409 lock-busy, at least
    // one wins, and the product ends with a winner's value, never a mix.
    for round in 0..10 {
        let barrier = Barrier::new(2);
        let results: Vec<(i64, u16)> = std::thread::scope(|s| {
            let hs: Vec<_> = [100 + round * 2, 101 + round * 2]
                .into_iter()
                .map(|p| {
                    let (env, barrier, body) = (&env, &barrier, &body);
                    s.spawn(move || {
                        barrier.wait();
                        (p, env.put_product("lock-A", &body(p)).status)
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let winners: Vec<i64> = results
            .iter()
            .filter(|(_, s)| *s == 200)
            .map(|(v, _)| *v)
            .collect();
        assert!(!winners.is_empty(), "round {round}: {results:?}");
        assert!(
            results.iter().all(|(_, s)| *s == 200 || *s == 409),
            "{results:?}"
        );
        let now = price();
        assert!(
            winners.contains(&now),
            "round {round}: {results:?} -> {now}"
        );
    }
}

#[test]
fn the_compensator_cron_releases_expired_reservations() {
    // Its own app: it makes a reservation due "now", which the expiry test must not see.
    let env = boot();
    env.product("cron-A", "A", 100, 3);
    let r = env.reserve(&json!({"reservation_id": "cron-1",
        "items": [{"sku": "cron-A", "quantity": 3}], "ttl_seconds": 3600}));
    assert_eq!(r.status, 201);
    assert_eq!(env.levels("cron-A"), (0, 3, 0));
    // Make it due now without waiting an hour: its record and its index entry.
    env.cli(&["HSET", "stock:reservation:cron-1", "expires_at", "1000"]);
    env.cli(&["ZADD", "stock:reservations:expiries", "1000", "cron-1"]);
    // The cron trigger fires every 15 s; the compensator rings the stock receiver's doorbell,
    // whose TTL sweep releases reservations expired for longer than its grace.
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.levels("cron-A") != (3, 0, 0) {
        assert!(
            Instant::now() < deadline,
            "the compensator did not release the reservation\nhost stderr:\n{}",
            env.app.stderr()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let resp = env.get_reservation("cron-1");
    assert_eq!(resp.json()["status"], "RELEASED");
}

#[test]
fn scripts_are_reloaded_after_redis_forgets_them() {
    // EVALSHA answers NOSCRIPT after a Redis restart or SCRIPT FLUSH; the component falls back to
    // EVAL (which caches the script again). Other tests running meanwhile take the same path.
    let env = env();
    env.product("flush-A", "A", 100, 2);
    env.cli(&["SCRIPT", "FLUSH"]);
    let r = env.reserve(&json!({"reservation_id": "flush-1",
        "items": [{"sku": "flush-A", "quantity": 2}]}));
    assert_eq!(r.status, 201, "{}", r.text());
    env.cli(&["SCRIPT", "FLUSH"]);
    assert_eq!(
        env.post_internal("/api/stock/reservations/flush-1/confirm")
            .status,
        200
    );
    assert_eq!(env.levels("flush-A"), (0, 0, 2));
}

#[test]
fn a_lost_redis_is_a_503_problem_not_a_crash() {
    let Shop {
        app,
        redis,
        state: _state,
        ..
    } = Shop::boot();
    drop(redis);
    let internal = internal_auth();
    let resp = app.get("/api/products/down-A").expect("GET");
    problem(&resp, 503);
    let resp = app
        .send_json(
            "POST",
            "/api/stock/reservations",
            &[(internal.0, &internal.1)],
            &json!({"reservation_id": "down-1", "items": [{"sku": "down-A", "quantity": 1}]}),
        )
        .expect("POST");
    problem(&resp, 503);
    // Client mistakes are still told apart from the outage: nothing needs Redis to refuse them.
    let resp = app
        .send_json(
            "POST",
            "/api/stock/reservations",
            &[(internal.0, &internal.1)],
            &json!({"items": []}),
        )
        .expect("POST");
    problem(&resp, 422);
}

fn adjustment(id: &str, delta: i64, reason: &str) -> Value {
    json!({"adjustment_id": id, "delta": delta, "reason": reason})
}

#[test]
fn stock_adjustments_move_available_only_and_are_idempotent() {
    let env = env();
    env.product("adj-A", "A", 100, 10);
    let r = env.reserve(&json!({"reservation_id": "adj-r1",
        "items": [{"sku": "adj-A", "quantity": 3}]}));
    assert_eq!(r.status, 201, "{}", r.text());

    let body = adjustment("adj-1", 5, "  delivery 42 ");
    let first = env.adjust_stock("adj-A", &body);
    assert_eq!(first.status, 201, "{}", first.text());
    assert_eq!(first.header("content-type"), Some("application/json"));
    let answer = first.json();
    let applied_at = answer["applied_at"]
        .as_str()
        .expect("applied_at")
        .to_owned();
    assert!(
        applied_at.ends_with('Z') && applied_at.len() == 24,
        "{answer}"
    );
    assert_eq!(
        answer,
        json!({"adjustment_id": "adj-1", "sku": "adj-A", "delta": 5, "reason": "delivery 42",
            "applied_at": applied_at, "available": 12, "reserved": 3, "sold": 0})
    );
    // The same request again: the same answer, nothing moved twice.
    let again = env.adjust_stock("adj-A", &body);
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.json(), answer);
    assert_eq!(env.levels("adj-A"), (12, 3, 0));

    // The same id for anything else is refused, naming adjustment_id, and moves nothing.
    for other in [
        adjustment("adj-1", 6, "delivery 42"),
        adjustment("adj-1", 5, "delivery 43"),
    ] {
        let p = problem(&env.adjust_stock("adj-A", &other), 422);
        assert_eq!(p["field"], "adjustment_id", "{p}");
    }
    env.product("adj-B", "B", 100, 1);
    let p = problem(&env.adjust_stock("adj-B", &body), 422);
    assert_eq!(p["field"], "adjustment_id", "{p}");
    assert_eq!(env.levels("adj-A"), (12, 3, 0));
    assert_eq!(env.levels("adj-B"), (1, 0, 0));

    // Down to zero, not below: reserved units are not on sale and cannot be adjusted away.
    assert_eq!(
        env.adjust_stock("adj-A", &adjustment("adj-2", -12, "breakage"))
            .status,
        201
    );
    let short = adjustment("adj-3", -1, "count correction");
    let p = problem(&env.adjust_stock("adj-A", &short), 409);
    assert_eq!(
        p["type"], "https://errors.spin-shop.dev/insufficient-stock",
        "{p}"
    );
    assert_eq!(
        (&p["field"], &p["available"]),
        (&json!("delta"), &json!(0)),
        "{p}"
    );
    assert_eq!(env.levels("adj-A"), (0, 3, 0));
    // A refused adjustment records nothing: the same id applies once it fits.
    assert_eq!(
        env.adjust_stock("adj-A", &adjustment("adj-4", 2, "found"))
            .status,
        201
    );
    let late = env.adjust_stock("adj-A", &short);
    assert_eq!(late.status, 201, "{}", late.text());
    assert_eq!(late.json()["available"], 1);
    // The reservation made before all this still settles against its own units.
    assert_eq!(
        env.post_internal("/api/stock/reservations/adj-r1/release")
            .status,
        200
    );
    assert_eq!(env.levels("adj-A"), (4, 0, 0));

    // Concurrent retries of one id: one move.
    let retry = adjustment("adj-5", 7, "delivery 43");
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|_| s.spawn(|| env.adjust_stock("adj-A", &retry).status))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut sorted = statuses.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [200, 200, 200, 200, 200, 200, 200, 201],
        "{statuses:?}"
    );
    assert_eq!(env.levels("adj-A"), (11, 0, 0));
}

#[test]
fn stock_adjustments_refuse_bad_input_naming_the_field() {
    let env = env();
    env.product("adjbad-A", "A", 100, 5);
    let ok = adjustment("adjbad-1", 1, "delivery");
    let with = |k: &str, v: Value| with_member(&ok, k, v);
    let without = |k: &str| without_member(&ok, k);
    let cases: Vec<(Value, u16, &str)> = vec![
        (without("adjustment_id"), 422, "adjustment_id"),
        (with("adjustment_id", json!("")), 422, "adjustment_id"),
        (with("adjustment_id", json!("a/b")), 422, "adjustment_id"),
        (with("adjustment_id", json!(7)), 422, "adjustment_id"),
        (
            with("adjustment_id", json!("x".repeat(129))),
            422,
            "adjustment_id",
        ),
        (without("delta"), 422, "delta"),
        (with("delta", json!(0)), 422, "delta"),
        (with("delta", json!(1_000_000_001)), 422, "delta"),
        (with("delta", json!(-1_000_000_001)), 422, "delta"),
        (with("delta", json!(1.5)), 422, "delta"),
        (with("delta", json!("1")), 422, "delta"),
        (with("delta", json!(1e300)), 422, "delta"),
        (without("reason"), 422, "reason"),
        (with("reason", json!("")), 422, "reason"),
        (with("reason", json!("   ")), 422, "reason"),
        (with("reason", json!("x".repeat(201))), 422, "reason"),
        (with("reason", json!("a\nb")), 422, "reason"),
        (with("reason", json!(3)), 422, "reason"),
        (json!([1]), 400, "body"),
        (json!(null), 400, "body"),
    ];
    for (body, status, field) in cases {
        let p = problem(&env.adjust_stock("adjbad-A", &body), status);
        assert_eq!(p["field"], field, "{body} -> {p}");
    }
    assert_eq!(
        problem(&env.adjust_stock("bad%20sku", &ok), 422)["field"],
        "sku"
    );
    let p = problem(&env.adjust_stock("adjbad-NOPE", &ok), 404);
    assert_eq!(p["skus"], json!(["adjbad-NOPE"]), "{p}");
    let path = "/api/products/adjbad-A/stock-adjustments";
    problem(
        &env.app.send_json("POST", path, &[], &ok).expect("POST"),
        401,
    );
    let wrong = [("authorization", "Bearer nope")];
    problem(
        &env.app.send_json("POST", path, &wrong, &ok).expect("POST"),
        401,
    );
    problem(&env.app.get(path).expect("GET"), 405);
    // More than the store keeps exact is a conflict with the current level, named `delta`.
    env.product("adjbad-FULL", "Full", 100, 1_000_000_000_000);
    let p = problem(&env.adjust_stock("adjbad-FULL", &ok), 409);
    assert_eq!(p["type"], "https://errors.spin-shop.dev/stock-limit", "{p}");
    assert_eq!(p["field"], "delta");
    // Nothing was moved or recorded by any refusal: the id is still free.
    assert_eq!(env.levels("adjbad-A"), (5, 0, 0));
    assert_eq!(env.levels("adjbad-FULL"), (1_000_000_000_000, 0, 0));
    assert_eq!(env.adjust_stock("adjbad-A", &ok).status, 201);
    assert_eq!(env.levels("adjbad-A"), (6, 0, 0));
}

/// What one racing client did.
enum Outcome {
    /// A reservation of 1 unit: (created, then confirmed / released / kept).
    Reserved(bool, &'static str),
    /// An adjustment: (its index, delta, applied).
    Adjusted(usize, i64, bool),
}

/// Reserves 1 unit of `sku` as `id` and then settles it as `then` says; 201 or 409 only.
fn reserve_one(env: &Env, id: &str, sku: &str, then: &'static str) -> Outcome {
    let r = env.reserve(&json!({"reservation_id": id, "items": [{"sku": sku, "quantity": 1}]}));
    assert!(r.status == 201 || r.status == 409, "{}", r.text());
    if r.status == 201 && then != "keep" {
        let s = env.post_internal(&format!("/api/stock/reservations/{id}/{then}"));
        assert_eq!(s.status, 200, "{}", s.text());
    }
    Outcome::Reserved(r.status == 201, then)
}

/// Applies `delta` to `sku` as `id`; 201 or 409 insufficient-stock only.
fn adjust_once(env: &Env, i: usize, sku: &str, delta: i64) -> Outcome {
    let r = env.adjust_stock(sku, &adjustment(&format!("mix-adj{i}"), delta, "race"));
    assert!(r.status == 201 || r.status == 409, "{}", r.text());
    if r.status == 201 {
        let a = r.json()["available"].as_i64().unwrap();
        assert!(a >= 0, "available went negative: {a}");
    } else {
        assert_eq!(problem(&r, 409)["field"], "delta");
    }
    Outcome::Adjusted(i, delta, r.status == 201)
}

#[test]
fn adjustments_and_reservations_interleave_without_creating_or_losing_units() {
    let env = env();
    let sku = "mix-A";
    env.product(sku, "Mixed", 100, 20);
    let (reservations, adjustments) = (40, 30);
    let barrier = Barrier::new(reservations + adjustments);
    let done = std::sync::atomic::AtomicBool::new(false);
    let (outcomes, observed) = std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            let mut seen = Vec::new();
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                seen.push(env.levels(sku));
            }
            seen
        });
        let mut hs = Vec::new();
        for i in 0..reservations {
            let (env, barrier) = (&env, &barrier);
            let then = ["confirm", "release", "keep"][i % 3];
            hs.push(s.spawn(move || {
                barrier.wait();
                reserve_one(env, &format!("mix-r{i}"), sku, then)
            }));
        }
        for i in 0..adjustments {
            let (env, barrier) = (&env, &barrier);
            let delta = [4, -3, -6][i % 3];
            hs.push(s.spawn(move || {
                barrier.wait();
                adjust_once(env, i, sku, delta)
            }));
        }
        let outcomes: Vec<Outcome> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        (outcomes, watcher.join().unwrap())
    });

    let (mut applied, mut sold, mut kept, mut refused) = (0i64, 0i64, 0i64, 0);
    for o in &outcomes {
        match *o {
            Outcome::Adjusted(_, delta, true) => applied += delta,
            Outcome::Adjusted(_, delta, false) => {
                assert!(delta < 0, "a positive delta is never refused");
                refused += 1;
            }
            Outcome::Reserved(true, "confirm") => sold += 1,
            Outcome::Reserved(true, "keep") => kept += 1,
            Outcome::Reserved(..) => {}
        }
    }
    let (a, r, s) = env.levels(sku);
    assert!(a >= 0);
    assert_eq!(
        (a + r + s, r, s),
        (20 + applied, kept, sold),
        "units created or lost: applied {applied}, refused adjustments {refused}"
    );
    assert!(!observed.is_empty());
    for (a, r, s) in observed {
        assert!(a >= 0 && r >= 0 && s >= 0, "negative bucket: {a} {r} {s}");
    }
    // Replaying every applied adjustment answers it again and moves nothing.
    for o in &outcomes {
        if let Outcome::Adjusted(i, delta, true) = *o {
            let r = env.adjust_stock(sku, &adjustment(&format!("mix-adj{i}"), delta, "race"));
            assert_eq!(r.status, 200, "{}", r.text());
            assert_eq!(r.json()["delta"], delta);
        }
    }
    let (a2, r2, s2) = env.levels(sku);
    assert_eq!((a2, r2, s2), (a, r, s));
}

/// `base` with member `k` set to `v` (a malformed-input case).
fn with_member(base: &Value, k: &str, v: Value) -> Value {
    let mut b = base.clone();
    b[k] = v;
    b
}

/// `base` without member `k` (a missing-field case).
fn without_member(base: &Value, k: &str) -> Value {
    let mut b = base.clone();
    b.as_object_mut().expect("an object").remove(k);
    b
}

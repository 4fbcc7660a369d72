//! End to end: the order component in the real `spin.toml`, calling the real stock component
//! through service chaining, against a private redis-server and the SQLite file in a temporary
//! state dir. Each test boots its own app. Database assertions read the state dir's
//! `sqlite_db.db` with the sqlite3 CLI, as an operator would.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};

use e2e::{assert_problem, Shop};
use serde_json::{json, Value};
use testkit::Response;

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// One app per test (a [`Shop`] with order helpers).
struct Env(Shop);

impl std::ops::Deref for Env {
    type Target = Shop;
    fn deref(&self) -> &Shop {
        &self.0
    }
}

impl Env {
    fn start() -> Env {
        Env(Shop::boot())
    }

    /// Reserves `quantity` of `sku` under `rid` at the stock component, as a crashed order
    /// request would have before dying; asserts 201.
    fn reserve_directly(&self, rid: &str, sku: &str, quantity: i64) {
        let r = self.reserve(&json!({"reservation_id": rid, "items": [{"sku": sku, "quantity": quantity}], "ttl_seconds": 900}));
        assert_eq!(r.status, 201, "{}", r.text());
    }

    /// For tests that run the repair route themselves: no cron tick may do it first.
    fn start_without_cron() -> Env {
        Env(Shop::boot_without_cron())
    }

    /// Without the cron, product `A` (100 EUR, 10 in stock), the orders schema in place (so
    /// rows can be planted before the first order).
    fn with_ten_of_a() -> Env {
        let env = Env::start_without_cron();
        env.put_product("A", 100, "EUR", 10);
        env.migrate_orders();
        env
    }

    fn put_product(&self, sku: &str, price: i64, currency: &str, stock: i64) {
        let resp = self.0.put_product(
            sku,
            &json!({"name": format!("Product {sku}"), "price": price, "currency": currency, "stock": stock}),
        );
        assert_eq!(resp.status, 200, "PUT {sku}: {}", resp.text());
    }

    fn order(&self, key: Option<&str>, body: &Value) -> Response {
        self.order_with(key, body, &[])
    }

    /// `POST /api/orders` as the customer the body names (its `user_id` when that is a
    /// non-empty string, else `u`), unless `extra` brings its own `authorization`.
    fn order_with(&self, key: Option<&str>, body: &Value, extra: &[(&str, &str)]) -> Response {
        let mut headers: Vec<(&str, &str)> = extra.to_vec();
        if let Some(k) = key {
            headers.push(("idempotency-key", k));
        }
        let user = body["user_id"].as_str().filter(|u| !u.is_empty());
        let (auth_name, auth) = e2e::customer_auth(user.unwrap_or("u"));
        if !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("authorization"))
        {
            headers.push((auth_name, &auth));
        }
        self.app
            .send_json("POST", "/api/orders", &headers, body)
            .expect("POST /api/orders")
    }

    /// `POST path` with exactly `headers` (no credential added).
    fn post(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        self.app
            .send("POST", path, headers, Some(b""))
            .expect("POST")
    }

    fn stderr(&self) -> String {
        self.app.stderr()
    }
}

#[test]
fn happy_path_prices_from_the_catalog_and_reserves_stock() {
    let env = Env::start_without_cron(); // asserts the outbox row before any relay stamps it
    env.put_product("TSHIRT", 1250, "EUR", 10);
    env.put_product("MUG", 499, "EUR", 5);
    let coupon = env.put_coupon("WELCOME10", &json!({"percent_off": 10, "currency": "EUR"}));
    assert_eq!(coupon.status, 201, "{}", coupon.text());

    // Prices sent by the client are ignored: the catalog's are used.
    let body = json!({
        "user_id": "user-1",
        "items": [{"sku": "TSHIRT", "quantity": 2, "unit_price": 1}, {"sku": "MUG", "quantity": 1}],
        "coupon_code": "WELCOME10",
        "total": 1
    });
    // A malformed traceparent is ignored, never an error.
    let resp = env.order_with(
        Some("happy-1"),
        &body,
        &[("traceparent", "00-not-a-trace-01")],
    );
    assert_eq!(resp.status, 201, "{}\n{}", resp.text(), env.stderr());
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let order = resp.json();
    assert_eq!(order["status"], "PENDING_PAYMENT");
    assert_eq!(order["user_id"], "user-1");
    assert_eq!(order["currency"], "EUR");
    assert_eq!(order["version"], 1);
    assert_eq!(order["coupon_code"], "WELCOME10");
    assert_eq!(
        order["items"],
        json!([
            {"sku": "TSHIRT", "quantity": 2, "unit_price": 1250, "line_total": 2500},
            {"sku": "MUG", "quantity": 1, "unit_price": 499, "line_total": 499}
        ])
    );
    assert_eq!(order["subtotal"], 2999);
    // 10% of 2999, rounded down to the minor unit (the coupon's rule, docs/coupons.md).
    assert_eq!(order["discount"], 299);
    assert_eq!(order["total"], 2700);
    let id = order["order_id"].as_str().expect("order_id");
    assert!(order["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(order["expires_at"].as_str().unwrap() > order["created_at"].as_str().unwrap());

    assert_eq!(env.levels("TSHIRT"), (8, 2, 0));
    assert_eq!(env.levels("MUG"), (4, 1, 0));

    let got = env.get_as("user-1", &format!("/api/orders/{id}"));
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.json(), order);

    // One order, its lines, one OrderCreated message, one completed key.
    let rows = env.sql("SELECT COUNT(*) AS n FROM order_lines");
    assert_eq!(rows[0]["n"], 2);
    // Sent on the request's fast path, so the stream has it at once; the row is stamped by the
    // relay later (the request itself writes no stamp: one transaction less).
    let rows =
        env.sql("SELECT message_id, type, aggregate_id, seq, trace_id, published_at FROM outbox");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (
            &rows[0]["type"],
            &rows[0]["aggregate_id"],
            &rows[0]["seq"],
            &rows[0]["trace_id"],
            &rows[0]["published_at"]
        ),
        (
            &json!("OrderCreated"),
            &json!(id),
            &json!(1),
            &Value::Null,
            &Value::Null
        )
    );
    let sent = stream_messages(&env);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["message_id"], rows[0]["message_id"]);
    let payload = env.sql("SELECT payload FROM outbox");
    let payload: Value = serde_json::from_str(payload[0]["payload"].as_str().unwrap()).unwrap();
    assert_eq!(payload["order_id"], id);
    assert_eq!(payload["total"], 2700);
    assert!(payload["reservation_id"]
        .as_str()
        .unwrap()
        .starts_with("rsv-"));
    // The fast path sends the row it appended without reading it back: the envelope is the one
    // the relay builds from the row. The same Redis step dropped the key's lease.
    let row = &env.sql("SELECT topic, type, aggregate_id, seq, created_at FROM outbox")[0];
    for field in ["topic", "type", "aggregate_id", "seq", "created_at"] {
        assert_eq!(sent[0][field], row[field], "{field}");
    }
    assert_eq!(sent[0]["payload"], payload);
    assert_eq!(sent[0]["trace_id"], Value::Null);
    assert_eq!(env.cli(&["ZCARD", OPEN_LEASES]).trim(), "0");
    assert_eq!(
        env.cli(&["EXISTS", &lease_key("u1", "happy-1")]).trim(),
        "0"
    );
}

#[test]
fn every_validation_error_is_a_problem_naming_the_field_and_reserves_nothing() {
    let env = Env::start();
    env.put_product("A", 100, "EUR", 10);
    env.put_product("B", 100, "EUR", 10);
    env.put_product("USD1", 100, "USD", 10);
    let ok_body = json!({"user_id": "u", "items": [{"sku": "A", "quantity": 1}]});

    // Idempotency-Key: required, 1-255 characters.
    assert_problem(&env.order(None, &ok_body), 400, Some("Idempotency-Key"));
    let long = "k".repeat(256);
    assert_problem(
        &env.order(Some(&long), &ok_body),
        400,
        Some("Idempotency-Key"),
    );
    let max = "k".repeat(255);
    assert_eq!(env.order(Some(&max), &ok_body).status, 201);

    let (auth_name, auth) = e2e::customer_auth("u");
    let raw = env
        .app
        .send(
            "POST",
            "/api/orders",
            &[
                ("idempotency-key", "v-raw"),
                ("content-type", "application/json"),
                (auth_name, &auth),
            ],
            Some(b"{not json"),
        )
        .expect("POST");
    assert_problem(&raw, 400, Some("body"));

    let cases: Vec<(Value, u16, &str)> = vec![
        (json!([1, 2]), 400, "body"),
        // A user_id other than the token's subject (`u`) is 403; a missing one is the
        // subject's (tests/tests/identity.rs).
        (
            json!({"user_id": "", "items": [{"sku": "A", "quantity": 1}]}),
            403,
            "user_id",
        ),
        (
            json!({"user_id": 7, "items": [{"sku": "A", "quantity": 1}]}),
            422,
            "user_id",
        ),
        (json!({"user_id": "u"}), 422, "items"),
        (json!({"user_id": "u", "items": []}), 422, "items"),
        (json!({"user_id": "u", "items": {}}), 422, "items"),
        (json!({"user_id": "u", "items": [7]}), 422, "items[0]"),
        (
            json!({"user_id": "u", "items": [{"quantity": 1}]}),
            422,
            "items[0].sku",
        ),
        (
            json!({"user_id": "u", "items": [{"sku": "a/b", "quantity": 1}]}),
            422,
            "items[0].sku",
        ),
        (
            json!({"user_id": "u", "items": [{"sku": "A", "quantity": 0}]}),
            422,
            "items[0].quantity",
        ),
        (
            json!({"user_id": "u", "items": [{"sku": "A", "quantity": 1}, {"sku": "B", "quantity": -2}]}),
            422,
            "items[1].quantity",
        ),
        (
            json!({"user_id": "u", "items": [{"sku": "A", "quantity": "2"}]}),
            422,
            "items[0].quantity",
        ),
        (
            json!({"user_id": "u", "items": [{"sku": "A", "quantity": 1.5}]}),
            422,
            "items[0].quantity",
        ),
        (
            json!({"user_id": "u", "items": [{"sku": "A", "quantity": 1}, {"sku": "A", "quantity": 2}]}),
            422,
            "items[1].sku",
        ),
        (
            json!({"user_id": "u", "items": [{"sku": "A", "quantity": 1}, {"sku": "NOPE", "quantity": 1}]}),
            422,
            "items[1].sku",
        ),
        (
            json!({"user_id": "u", "items": [{"sku": "A", "quantity": 1}, {"sku": "USD1", "quantity": 1}]}),
            422,
            "items",
        ),
        (
            json!({"user_id": "u", "items": [{"sku": "A", "quantity": 1}], "coupon_code": "no spaces"}),
            422,
            "coupon_code",
        ),
        (
            json!({"user_id": "u", "items": [{"sku": "A", "quantity": 1}], "coupon_code": 5}),
            422,
            "coupon_code",
        ),
    ];
    for (i, (body, status, field)) in cases.iter().enumerate() {
        let key = format!("v-{i}");
        let resp = env.order(Some(&key), body);
        let problem = assert_problem(&resp, *status, Some(field));
        if *field == "items[1].sku" && body["items"][1]["sku"] == "NOPE" {
            assert_eq!(problem["skus"], json!(["NOPE"]), "{problem}");
        }
        if body["items"][1]["sku"] == "USD1" {
            assert_eq!(problem["skus"], json!(["A", "USD1"]), "{problem}");
        }
    }
    // Only the one valid order reserved anything.
    assert_eq!(env.levels("A"), (9, 1, 0));
    assert_eq!(env.levels("B"), (10, 0, 0));
    assert_eq!(env.levels("USD1"), (10, 0, 0));
}

#[test]
fn idempotency_key_replays_refuses_other_bodies_and_deducts_once() {
    let env = Env::start();
    env.put_product("A", 300, "EUR", 10);
    let body = json!({"user_id": "u", "items": [{"sku": "A", "quantity": 3}]});
    let first = env.order(Some("same-key"), &body);
    assert_eq!(first.status, 201, "{}", first.text());

    // Same key, same content (other key order and whitespace): the stored answer again.
    let (auth_name, auth) = e2e::customer_auth("u");
    let again = env
        .app
        .send(
            "POST",
            "/api/orders",
            &[
                ("idempotency-key", "same-key"),
                ("content-type", "application/json"),
                (auth_name, &auth),
            ],
            Some(br#"{ "items": [ {"quantity": 3, "sku": "A"} ],  "user_id": "u" }"#),
        )
        .expect("POST");
    assert_eq!(again.status, 201, "{}", again.text());
    assert_eq!(
        again.body, first.body,
        "a replay answers the stored body byte for byte"
    );
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(env.levels("A"), (7, 3, 0), "deducted once");

    // Same key, different body: 422.
    let other = json!({"user_id": "u", "items": [{"sku": "A", "quantity": 4}]});
    assert_problem(
        &env.order(Some("same-key"), &other),
        422,
        Some("Idempotency-Key"),
    );
    assert_eq!(env.levels("A"), (7, 3, 0));
    assert_eq!(env.sql("SELECT COUNT(*) AS n FROM orders")[0]["n"], 1);
}

#[test]
fn two_customers_using_the_same_key_each_get_their_own_order() {
    let env = Env::with_ten_of_a();
    // Alice claims the predictable key first; Bob then sends it with an order of his own.
    let alice = json!({"user_id": "alice", "items": [{"sku": "A", "quantity": 1}]});
    let bob = json!({"user_id": "bob", "items": [{"sku": "A", "quantity": 2}]});
    let a = env.order(Some("first-order"), &alice);
    assert_eq!(a.status, 201, "{}", a.text());
    let b = env.order(Some("first-order"), &bob);
    assert_eq!(
        b.status,
        201,
        "Bob's own order, not Alice's key: {}",
        b.text()
    );
    assert_eq!(b.header("idempotent-replayed"), None);
    let (a, b) = (a.json(), b.json());
    assert_eq!(
        (a["user_id"].as_str(), b["user_id"].as_str()),
        (Some("alice"), Some("bob"))
    );
    assert_ne!(a["order_id"], b["order_id"]);
    assert_eq!(env.levels("A"), (7, 3, 0));
    // Each reserved under a reservation id of their own key.
    assert_eq!(
        env.reservation_of(&a),
        claim_key("alice", "first-order").reservation_id(0)
    );
    assert_eq!(
        env.reservation_of(&b),
        claim_key("bob", "first-order").reservation_id(0)
    );

    // A replay answers each customer their own order, and deducts nothing more.
    for (body, order) in [(&alice, &a), (&bob, &b)] {
        let again = env.order(Some("first-order"), body);
        assert_eq!(again.status, 201, "{}", again.text());
        assert_eq!(again.header("idempotent-replayed"), Some("true"));
        assert_eq!(again.json()["order_id"], order["order_id"]);
    }
    // Another body under a customer's own key is still refused, for that customer only.
    let other = json!({"user_id": "bob", "items": [{"sku": "A", "quantity": 5}]});
    assert_problem(
        &env.order(Some("first-order"), &other),
        422,
        Some("Idempotency-Key"),
    );
    assert_eq!(env.levels("A"), (7, 3, 0));
    assert_eq!(env.count_rows("orders"), 2);
}

#[test]
fn concurrent_requests_with_one_key_create_one_order() {
    let env = Arc::new(Env::start());
    env.put_product("A", 300, "EUR", 100);
    let body = json!({"user_id": "u", "items": [{"sku": "A", "quantity": 2}]});
    let n = 12;
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let env = Arc::clone(&env);
            let barrier = Arc::clone(&barrier);
            let body = body.clone();
            std::thread::spawn(move || {
                barrier.wait();
                env.order(Some("race-key"), &body)
            })
        })
        .collect();
    let responses: Vec<Response> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut ids = std::collections::HashSet::new();
    let mut fresh = 0;
    for r in &responses {
        match r.status {
            201 => {
                ids.insert(r.json()["order_id"].as_str().unwrap().to_owned());
                if r.header("idempotent-replayed").is_none() {
                    fresh += 1;
                }
            }
            409 => {
                let p = assert_problem(r, 409, Some("Idempotency-Key"));
                assert_eq!(
                    p["type"],
                    "https://errors.spin-shop.dev/request-in-progress"
                );
            }
            other => panic!("unexpected {other}: {}\n{}", r.text(), env.stderr()),
        }
    }
    assert_eq!(fresh, 1, "exactly one request created the order");
    assert_eq!(ids.len(), 1, "every 201 is the same order");
    assert_eq!(env.levels("A"), (98, 2, 0), "deducted once");
    assert_eq!(env.sql("SELECT COUNT(*) AS n FROM orders")[0]["n"], 1);
}

#[test]
fn fifty_concurrent_orders_for_the_last_ten_units() {
    let env = Arc::new(Env::start());
    env.put_product("LAST", 999, "EUR", 10);
    let n = 50;
    // The watcher takes part in the barrier too: its first poll is before any order, and it
    // keeps polling until every order has answered, then once more.
    let barrier = Arc::new(Barrier::new(n + 1));
    let done = Arc::new(AtomicBool::new(false));
    // How many orders have answered: a poll that ends before all have is a poll during the race.
    let answered = Arc::new(AtomicUsize::new(0));

    // Watches the product while the orders race: never below zero, total conserved.
    let watcher = {
        let env = Arc::clone(&env);
        let (done, answered) = (Arc::clone(&done), Arc::clone(&answered));
        let barrier = Arc::clone(&barrier);
        std::thread::spawn(move || {
            let poll = || {
                let (a, r, s) = env.levels("LAST");
                assert!(a >= 0, "available below zero: {a}");
                assert_eq!(a + r + s, 10, "units appeared or vanished: {a}+{r}+{s}");
                (a, r, s)
            };
            let first = poll();
            barrier.wait();
            let mut during = Vec::new();
            while !done.load(Ordering::SeqCst) {
                let seen = poll();
                if answered.load(Ordering::SeqCst) < n {
                    during.push(seen);
                }
            }
            (first, during, poll())
        })
    };
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let env = Arc::clone(&env);
            let (barrier, answered) = (Arc::clone(&barrier), Arc::clone(&answered));
            std::thread::spawn(move || {
                let body = json!({"user_id": format!("buyer-{i}"), "items": [{"sku": "LAST", "quantity": 1}]});
                barrier.wait();
                let resp = env.order(Some(&format!("last-{i}")), &body);
                answered.fetch_add(1, Ordering::SeqCst);
                resp
            })
        })
        .collect();
    let responses: Vec<Response> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    done.store(true, Ordering::SeqCst);
    let (first, during, last) = watcher.join().expect("watcher saw a broken invariant");
    assert_eq!(first, (10, 0, 0), "the watcher polled before the race");
    assert!(
        !during.is_empty(),
        "the watcher polled while orders were still in flight"
    );
    assert_eq!(last, (0, 10, 0), "and after it");

    let created = responses.iter().filter(|r| r.status == 201).count();
    for r in responses.iter().filter(|r| r.status != 201) {
        let p = assert_problem(r, 409, None);
        assert_eq!(
            p["type"], "https://errors.spin-shop.dev/insufficient-stock",
            "{p}"
        );
        assert_eq!(p["skus"], json!(["LAST"]), "{p}");
    }
    assert_eq!(created, 10, "exactly the last ten units are sold");
    // The 50 requests were the first to touch SQLite: they migrated the fresh database
    // concurrently, and every migration was applied exactly once.
    // (Once in each shard: `sql` reads every shard's table as one.)
    let versions = env.sql(
        "SELECT version, COUNT(*) AS n FROM schema_version WHERE component = 'order' \
         GROUP BY version ORDER BY version",
    );
    let shards = env.order_shards;
    assert_eq!(
        versions,
        (1..=e2e::migration_files("order").1)
            .map(|v| json!({"version": v, "n": shards}))
            .collect::<Vec<_>>()
    );
    assert_eq!(env.levels("LAST"), (0, 10, 0));
    assert_eq!(env.sql("SELECT COUNT(*) AS n FROM orders")[0]["n"], 10);
    // The order side agrees with the stock side: its lines add up to Redis' `reserved`, every
    // reservation behind an order holds its units, each key ended completed (10) or failed (40),
    // and nothing is owed back.
    let lines = env.sql("SELECT SUM(quantity) AS q FROM order_lines WHERE sku = 'LAST'");
    assert_eq!(lines[0]["q"], 10);
    for row in env.sql("SELECT reservation_id FROM orders") {
        let rid = row["reservation_id"].as_str().unwrap();
        let r = env.get_reservation(rid);
        assert_eq!(r.json()["status"], "RESERVED", "{rid}: {}", r.text());
    }
    let states =
        env.sql("SELECT state, COUNT(*) AS n FROM idempotency_keys GROUP BY state ORDER BY state");
    assert_eq!(
        states,
        vec![
            json!({"state": "completed", "n": 10}),
            json!({"state": "failed", "n": 40})
        ]
    );
    assert_eq!(
        env.sql("SELECT COUNT(*) AS n FROM pending_releases WHERE released_ms IS NULL")[0]["n"],
        0
    );
}

#[test]
fn a_failed_order_write_releases_the_stock_and_the_key_can_be_retried() {
    let env = Env::start();
    env.put_product("A", 100, "EUR", 5);
    // Any order request migrates the schema; then the database refuses new orders, for real.
    env.migrate_orders();
    refuse_order_writes(&env);

    let body = json!({"user_id": "u", "items": [{"sku": "A", "quantity": 2}]});
    let resp = env.order(Some("fail-key"), &body);
    let p = assert_problem(&resp, 503, None);
    assert_eq!(p["reservation_released"], true, "{p}");
    assert_eq!(env.levels("A"), (5, 0, 0), "the reservation was released");
    assert_eq!(env.sql("SELECT COUNT(*) AS n FROM orders")[0]["n"], 0);
    assert_eq!(
        env.sql("SELECT type FROM outbox"),
        vec![json!({"type": "ReservationReleaseOwed"})],
        "no OrderCreated without the order; the owed release travels as a message too"
    );
    let pending =
        env.sql("SELECT reason, released_ms IS NOT NULL AS released FROM pending_releases");
    assert_eq!(
        pending,
        vec![json!({"reason": "order-write-failed", "released": 1})]
    );

    // Once the database takes writes again, the same key succeeds with a fresh reservation.
    allow_order_writes(&env);
    let retry = env.order(Some("fail-key"), &body);
    assert_eq!(retry.status, 201, "{}\n{}", retry.text(), env.stderr());
    assert_eq!(env.levels("A"), (3, 2, 0));
}

#[test]
fn cancel_releases_stock_writes_the_outbox_and_is_idempotent() {
    let env = Env::start();
    env.put_product("A", 100, "EUR", 5);
    let body = json!({"user_id": "u", "items": [{"sku": "A", "quantity": 2}]});
    let created = env.order_with(Some("cancel-1"), &body, &[("traceparent", TRACEPARENT)]);
    assert_eq!(created.status, 201, "{}", created.text());
    let id = created.json()["order_id"].as_str().unwrap().to_owned();
    assert_eq!(env.levels("A"), (3, 2, 0));

    let path = format!("/api/orders/{id}/cancel");
    let (auth, bearer) = e2e::customer_auth("u");
    let cancelled = env.post(&path, &[(auth, &bearer), ("traceparent", TRACEPARENT)]);
    assert_eq!(
        cancelled.status,
        200,
        "{}\n{}",
        cancelled.text(),
        env.stderr()
    );
    let order = cancelled.json();
    assert_eq!(order["status"], "CANCELLED");
    assert_eq!(order["version"], 2);
    assert_eq!(env.levels("A"), (5, 0, 0), "stock released");

    let twice = env.cancel("u", &id);
    assert_eq!(twice.status, 200, "{}", twice.text());
    assert_eq!(twice.json(), order, "cancelling twice changes nothing");
    assert_eq!(env.levels("A"), (5, 0, 0));

    let rows = env.sql(&format!(
        "SELECT type, seq, trace_id, json_extract(payload, '$.order_id') AS oid \
         FROM outbox WHERE aggregate_id = '{id}' ORDER BY seq"
    ));
    assert_eq!(
        rows,
        vec![
            json!({"type": "OrderCreated", "seq": 1, "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "oid": id}),
            json!({"type": "OrderCancelled", "seq": 2, "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "oid": id}),
        ]
    );
    let ids = env.sql("SELECT COUNT(DISTINCT message_id) AS n FROM outbox");
    assert_eq!(ids[0]["n"], 2);
    assert_eq!(
        env.sql("SELECT COUNT(*) AS n FROM pending_releases WHERE released_ms IS NULL")[0]["n"],
        0
    );

    // Once paid (set directly: payments come with a later issue), cancel is refused.
    let paid = env.order(Some("cancel-2"), &body);
    assert_eq!(paid.status, 201);
    let paid_id = paid.json()["order_id"].as_str().unwrap().to_owned();
    env.sql(&format!(
        "UPDATE orders SET status = 'PAID', version = 2 WHERE order_id = '{paid_id}'"
    ));
    let refused = env.cancel("u", &paid_id);
    let p = assert_problem(&refused, 409, None);
    assert_eq!(p["status"], 409);
    assert_eq!(
        env.levels("A"),
        (3, 2, 0),
        "a refused cancel releases nothing"
    );

    // Unknown orders.
    assert_problem(
        &env.cancel("u", "ord_00000000000000000000000000000000"),
        404,
        None,
    );
    assert_problem(&env.cancel("u", "whatever"), 404, None);
}

#[test]
fn listing_pages_newest_first_with_an_opaque_cursor() {
    let env = Env::start();
    env.put_product("A", 100, "EUR", 100);
    let mut created = Vec::new();
    for i in 0..5 {
        let body = json!({"user_id": "lister", "items": [{"sku": "A", "quantity": 1}]});
        let r = env.order(Some(&format!("list-{i}")), &body);
        assert_eq!(r.status, 201, "{}", r.text());
        created.push(r.json());
    }
    let other = env.order(
        Some("list-other"),
        &json!({"user_id": "someone-else", "items": [{"sku": "A", "quantity": 1}]}),
    );
    assert_eq!(other.status, 201);

    let mut seen: Vec<Value> = Vec::new();
    let mut path = "/api/orders?user_id=lister&limit=2".to_owned();
    let mut pages = 0;
    loop {
        let r = env.get_as("lister", &path);
        assert_eq!(r.status, 200, "{}", r.text());
        let page = r.json();
        let orders = page["orders"].as_array().unwrap().clone();
        assert!(orders.len() <= 2);
        seen.extend(orders);
        pages += 1;
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/api/orders?user_id=lister&limit=2&cursor={c}"),
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 5);
    let key = |o: &Value| {
        (
            o["created_at"].as_str().unwrap().to_owned(),
            o["order_id"].as_str().unwrap().to_owned(),
        )
    };
    for pair in seen.windows(2) {
        assert!(key(&pair[0]) > key(&pair[1]), "not newest first: {pair:?}");
    }
    let mut want: Vec<String> = created
        .iter()
        .map(|o| o["order_id"].as_str().unwrap().to_owned())
        .collect();
    let mut got: Vec<String> = seen
        .iter()
        .map(|o| o["order_id"].as_str().unwrap().to_owned())
        .collect();
    want.sort();
    got.sort();
    assert_eq!(got, want, "every order exactly once, no other user's");

    // The customer's own orders without naming them: the same first page.
    let own = env.get_as("lister", "/api/orders?limit=2").json();
    assert_eq!(own["orders"], json!(seen[..2]));

    // Query errors (the admin must name the user).
    let (k, v) = e2e::admin_auth();
    let r = env
        .app
        .send("GET", "/api/orders", &[(k, &v)], None)
        .unwrap();
    assert_problem(&r, 400, Some("user_id"));
    for (q, field) in [
        ("/api/orders?user_id=lister&limit=0", "limit"),
        ("/api/orders?user_id=lister&limit=101", "limit"),
        ("/api/orders?user_id=lister&limit=ten", "limit"),
        ("/api/orders?user_id=lister&cursor=not-a-cursor", "cursor"),
        ("/api/orders?user_id=lister&cursor=%%%", "cursor"),
    ] {
        let r = env.get_as("lister", q);
        assert_problem(&r, 400, Some(field));
    }
    let empty = env.get_as("nobody", "/api/orders?user_id=nobody").json();
    assert_eq!(empty, json!({"orders": [], "next_cursor": null}));
}

#[test]
fn unknown_orders_are_404_problems() {
    let env = Env::start();
    for path in [
        "/api/orders/ord_00000000000000000000000000000000",
        "/api/orders/not-an-id",
    ] {
        assert_problem(&env.get_as("u", path), 404, None);
        assert_problem(&env.get_order(&path["/api/orders/".len()..]), 404, None);
    }
    let r = env
        .app
        .send("DELETE", "/api/orders", &[], None)
        .expect("DELETE");
    assert_problem(&r, 405, None);
    assert_eq!(r.header("allow"), Some("GET, POST"));
}

/// How long ago a planted claim's holder took its lease.
#[derive(Clone, Copy, PartialEq)]
enum Holder {
    /// Long ago: its lease ran out, its open-lease member is stale (the holder died).
    Dead,
    /// Just now: it holds the lease (a live request).
    Live,
}

/// The claim a request left in Redis when it died (or while it runs) between taking the
/// key's lease and writing, exactly as the order component writes it (store/leases.rs): an
/// open-lease member `<attempt> <token> <fingerprint> <owner> <key>` scored by when it was
/// taken, and, for a live holder, the lease itself. The owner is the body's `user_id`. Returns
/// the reservation id of attempt 0.
fn plant_claim(env: &Env, key: &str, order: &Value, holder: Holder) -> String {
    let fp = order_fingerprint(order);
    let user = order["user_id"].as_str().unwrap();
    let taken_ms = match holder {
        Holder::Dead => 0,
        Holder::Live => e2e::unix_now() * 1000,
    };
    let member = format!("0 clm_dead {fp} {user} {key}");
    env.cli(&["ZADD", OPEN_LEASES, &taken_ms.to_string(), &member]);
    if holder == Holder::Live {
        let lease = lease_key(user, key);
        env.cli(&["SET", &lease, &format!("clm_dead {fp}"), "PX", "60000"]);
    }
    claim_key(user, key).reservation_id(0)
}

/// The claim row an older version of the order component wrote while a request was in progress
/// (before the Redis lease), left by a request that died long ago, as migration 0009 keeps it:
/// without an owner (it has no order to take one from), with the reservation id of its key alone.
fn plant_legacy_claim(env: &Env, key: &str, order: &Value) -> String {
    let row = claim_row(key, order, "in-progress", 0);
    let user = order["user_id"].as_str().unwrap();
    // An unscoped claim lives in the shard of the owner '' (as `spin-shop-dev reshard` puts it).
    env.sql_for(
        "",
        &row.replacen(&format!("VALUES ('{user}', "), "VALUES ('', ", 1),
    );
    use shop_domain::idempotency::IdempotencyKey;
    IdempotencyKey::parse(key).unwrap().reservation_id(0)
}

/// The order component's sorted set of open leases (store/leases.rs).
const OPEN_LEASES: &str = "order:open-leases";

/// The Redis key of customer `user`'s lease on `key` (store/leases.rs).
fn lease_key(user: &str, key: &str) -> String {
    format!("order:key-lease:{user} {key}")
}

/// Customer `user`'s Idempotency-Key `key`, as the order component scopes it.
fn claim_key(user: &str, key: &str) -> shop_domain::idempotency::ClaimKey {
    use shop_domain::idempotency::{ClaimKey, IdempotencyKey};
    use shop_domain::new_order::UserId;
    ClaimKey::new(
        UserId::parse(user).unwrap(),
        IdempotencyKey::parse(key).unwrap(),
    )
}

/// The `idempotency_keys` row of `key` for `order`, in `state` at `attempt`, as the order
/// component writes it (store/claims.rs), as an INSERT statement; a `completed` row carries a
/// stored 201 response of order `ord_planted`.
fn claim_row(key: &str, order: &Value, state: &str, attempt: i64) -> String {
    let fp = order_fingerprint(order);
    let (status, body, order_id) = match state {
        "completed" => ("201", "'{\"order_id\":\"ord_planted\"}'", "'ord_planted'"),
        _ => ("NULL", "NULL", "NULL"),
    };
    let user = order["user_id"].as_str().unwrap();
    format!(
        "INSERT INTO idempotency_keys (user_id, idem_key, fingerprint, state, attempt, claim_token, claimed_ms, updated_ms, response_status, response_body, order_id) \
         VALUES ('{user}', '{key}', '{fp}', '{state}', {attempt}, 'clm_planted', 0, 0, {status}, {body}, {order_id});"
    )
}

/// The order component's fingerprint of an order request body.
fn order_fingerprint(order: &Value) -> String {
    use shop_domain::idempotency::fingerprint;
    use shop_domain::new_order::{NewOrder, RawItem};
    let items: Vec<RawItem> = order["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| RawItem {
            sku: i["sku"].as_str().unwrap(),
            quantity: i["quantity"].as_i64().unwrap(),
        })
        .collect();
    let parsed = NewOrder::parse(order["user_id"].as_str().unwrap(), &items, None).unwrap();
    fingerprint(&parsed)
}

/// A request that claimed `key` long ago, reserved `order`'s single line under the claim's
/// reservation id, and died before writing: its planted claim and its real reservation. Returns
/// the reservation id.
fn crashed_holder(env: &Env, key: &str, order: &Value) -> String {
    let rid = plant_claim(env, key, order, Holder::Dead);
    let line = &order["items"][0];
    let (sku, qty) = (
        line["sku"].as_str().unwrap(),
        line["quantity"].as_i64().unwrap(),
    );
    env.reserve_directly(&rid, sku, qty);
    rid
}

/// The database refuses new orders, for real: a trigger raising on every INSERT INTO orders.
fn refuse_order_writes(env: &Env) {
    env.sql(
        "CREATE TRIGGER e2e_refuse_orders BEFORE INSERT ON orders \
         BEGIN SELECT RAISE(ABORT, 'forced failure of the order write'); END",
    );
}

/// A customer whose shard is the one holding claims from before keys were scoped (owner `''`,
/// so the shard `''` hashes to): only such a customer's retry across that upgrade finds its old
/// claim; another customer's retry is a new claim, and the sweep releases the old reservation
/// (docs/orders.md). With one shard, every customer is one.
fn legacy_customer(env: &Env) -> String {
    let legacy = env.shard_of("");
    (0..)
        .map(|i| format!("w{i}"))
        .find(|u| env.shard_of(u) == legacy)
        .unwrap()
}

/// Undoes [`refuse_order_writes`].
fn allow_order_writes(env: &Env) {
    env.sql("DROP TRIGGER e2e_refuse_orders");
}

#[test]
fn a_retry_after_a_crash_reuses_the_reservation_and_a_live_claim_is_409() {
    let env = Env::with_ten_of_a();
    let body = json!({"user_id": "u", "items": [{"sku": "A", "quantity": 2}]});

    // An instance claimed "crash-key" long ago, reserved the stock, then died before writing.
    let rid = plant_claim(&env, "crash-key", &body, Holder::Dead);
    env.reserve_directly(&rid, "A", 2);
    assert_eq!(env.levels("A"), (8, 2, 0));

    // The client's retry takes the abandoned claim over and reuses that very reservation.
    let retry = env.order(Some("crash-key"), &body);
    assert_eq!(retry.status, 201, "{}\n{}", retry.text(), env.stderr());
    assert_eq!(env.levels("A"), (8, 2, 0), "no second deduction");
    let rows = env.sql("SELECT reservation_id FROM orders");
    assert_eq!(rows, vec![json!({"reservation_id": rid})]);

    // A claim that is still fresh (its holder is alive) is 409, and nothing is reserved; the
    // same key with another body while it runs is 422.
    plant_claim(&env, "live-key", &body, Holder::Live);
    let busy = env.order(Some("live-key"), &body);
    let p = assert_problem(&busy, 409, Some("Idempotency-Key"));
    assert_eq!(
        p["type"],
        "https://errors.spin-shop.dev/request-in-progress"
    );
    let other = json!({"user_id": "u", "items": [{"sku": "A", "quantity": 1}]});
    assert_problem(
        &env.order(Some("live-key"), &other),
        422,
        Some("Idempotency-Key"),
    );
    assert_eq!(env.levels("A"), (8, 2, 0));

    // An in-progress row an older version wrote (before the Redis lease, and before keys were
    // scoped to their customer) is retaken the same way, reusing its reservation, by a customer
    // of the shard such rows live in (see [`legacy_customer`]).
    let body = json!({"user_id": legacy_customer(&env), "items": [{"sku": "A", "quantity": 2}]});
    let legacy = plant_legacy_claim(&env, "legacy-key", &body);
    env.reserve_directly(&legacy, "A", 2);
    let retry = env.order(Some("legacy-key"), &body);
    assert_eq!(retry.status, 201, "{}\n{}", retry.text(), env.stderr());
    assert_eq!(env.levels("A"), (6, 4, 0), "no second deduction");
    assert_eq!(env.reservation_of(&retry.json()), legacy);
    // Another customer's request under that key is not that claim's: their own order.
    let theirs = json!({"user_id": "v", "items": [{"sku": "A", "quantity": 1}]});
    let other = env.order(Some("legacy-key"), &theirs);
    assert_eq!(other.status, 201, "{}", other.text());
    assert_eq!(other.header("idempotent-replayed"), None);
    assert_eq!(env.levels("A"), (5, 5, 0));
}

/// A request of a version from before keys were scoped took its lease under the old names
/// (`order:lease:<key>`, a member without an owner in `order:leases`), reserved, and died
/// before the upgrade: the sweep settles it as any other, and the client's retry continues the
/// claim (migration 0009 leaves it unscoped) under the next attempt.
#[test]
fn a_lease_left_open_before_keys_were_scoped_is_settled_by_the_sweep() {
    use shop_domain::idempotency::IdempotencyKey;
    let env = Env::with_ten_of_a();
    let user = legacy_customer(&env);
    let body = json!({"user_id": user, "items": [{"sku": "A", "quantity": 3}]});
    let fp = order_fingerprint(&body);
    env.cli(&[
        "ZADD",
        "order:leases",
        "0",
        &format!("0 clm_old {fp} old key"),
    ]);
    let old = IdempotencyKey::parse("old key").unwrap();
    env.reserve_directly(&old.reservation_id(0), "A", 3);
    assert_eq!(env.levels("A"), (7, 3, 0));

    let report = env.compensate();
    assert_eq!(report.status, 200, "{}\n{}", report.text(), env.stderr());
    assert_eq!(report.json()["abandoned_claims"], 1, "{}", report.text());
    assert_eq!(env.levels("A"), (10, 0, 0), "its reservation released");
    assert_eq!(env.cli(&["ZCARD", "order:leases"]).trim(), "0");

    let retry = env.order(Some("old key"), &body);
    assert_eq!(retry.status, 201, "{}\n{}", retry.text(), env.stderr());
    assert_eq!(env.reservation_of(&retry.json()), old.reservation_id(1));
    assert_eq!(env.levels("A"), (7, 3, 0));
}

#[test]
fn concurrent_cancels_change_the_order_once() {
    let env = Arc::new(Env::start());
    env.put_product("A", 100, "EUR", 5);
    let body = json!({"user_id": "u", "items": [{"sku": "A", "quantity": 3}]});
    let created = env.order(Some("cancel-race"), &body);
    assert_eq!(created.status, 201, "{}", created.text());
    let id = created.json()["order_id"].as_str().unwrap().to_owned();

    let n = 8;
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let env = Arc::clone(&env);
            let barrier = Arc::clone(&barrier);
            let id = id.clone();
            std::thread::spawn(move || {
                barrier.wait();
                env.cancel("u", &id)
            })
        })
        .collect();
    for h in handles {
        let r = h.join().unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["status"], "CANCELLED");
        assert_eq!(r.json()["version"], 2, "one state change, whoever won");
    }
    assert_eq!(env.levels("A"), (5, 0, 0), "released once");
    let rows = env.sql("SELECT type, seq FROM outbox ORDER BY seq");
    assert_eq!(
        rows,
        vec![
            json!({"type": "OrderCreated", "seq": 1}),
            json!({"type": "OrderCancelled", "seq": 2})
        ]
    );
}

#[test]
fn the_compensation_route_finishes_owed_releases_and_abandoned_claims() {
    let env = Env::with_ten_of_a();
    let reserve = |rid: &str, quantity: i64| env.reserve_directly(rid, "A", quantity);

    // A release that is owed (its call failed when the order write failed).
    reserve("rsv-owed-1", 2);
    env.sql_for(
        "u",
        "INSERT INTO pending_releases (reservation_id, order_id, reason, created_ms) \
         VALUES ('rsv-owed-1', NULL, 'order-write-failed', 0)",
    );
    // A release that cannot succeed: the reservation was sold (confirmed) meanwhile. It stays
    // owed, counted and explained, for an operator.
    reserve("rsv-sold-1", 1);
    let confirmed = env.post_internal("/api/stock/reservations/rsv-sold-1/confirm");
    assert_eq!(confirmed.status, 200, "{}", confirmed.text());
    env.sql_for(
        "u",
        "INSERT INTO pending_releases (reservation_id, order_id, reason, created_ms) \
         VALUES ('rsv-sold-1', NULL, 'order-cancelled', 1)",
    );
    // A claim whose request died after reserving, and whose client never came back.
    let body = json!({"user_id": "u", "items": [{"sku": "A", "quantity": 3}]});
    let rid0 = plant_claim(&env, "abandoned", &body, Holder::Dead);
    reserve(&rid0, 3);
    assert_eq!(env.levels("A"), (4, 5, 1));

    // The repair route is the compensator's, not the public's.
    assert_problem(&env.post("/api/orders/compensate", &[]), 401, None);
    let report = env.compensate();
    assert_eq!(report.status, 200, "{}\n{}", report.text(), env.stderr());
    assert_eq!(
        report.json(),
        // `unpublished` 1: the ReservationReleaseOwed of the abandoned claim, sent on this
        // call's fast path and stamped by a later relay run once its grace has passed.
        json!({"abandoned_claims": 1, "expired_orders": 0, "released": 2, "still_pending": 1, "published": 0, "unpublished": 1})
    );
    assert_eq!(
        env.levels("A"),
        (9, 0, 1),
        "both releasable reservations released"
    );
    let stuck = env.sql(
        "SELECT attempts, last_error LIKE '%conflict%' AS explained FROM pending_releases \
         WHERE released_ms IS NULL",
    );
    assert_eq!(stuck, vec![json!({"attempts": 1, "explained": 1})]);
    let claim = env.sql("SELECT state, attempt FROM idempotency_keys WHERE idem_key = 'abandoned'");
    assert_eq!(claim, vec![json!({"state": "failed", "attempt": 1})]);

    // The client's late retry reserves afresh under the next attempt's id.
    let retry = env.order(Some("abandoned"), &body);
    assert_eq!(retry.status, 201, "{}\n{}", retry.text(), env.stderr());
    assert_eq!(env.levels("A"), (6, 3, 1));
    let rid1 = claim_key("u", "abandoned").reservation_id(1);
    assert_eq!(
        env.sql("SELECT reservation_id FROM orders"),
        vec![json!({"reservation_id": rid1})]
    );

    // Nothing left to repair. `unpublished` 2: the ReservationReleaseOwed and the retried
    // order's OrderCreated, both sent on their request's fast path and stamped by a relay run
    // after their grace.
    let again = env.compensate();
    assert_eq!(
        again.json(),
        json!({"abandoned_claims": 0, "expired_orders": 0, "released": 0, "still_pending": 1, "published": 0, "unpublished": 2})
    );
    assert_eq!(env.levels("A"), (6, 3, 1));
}

#[test]
fn a_retaken_claim_whose_reservation_was_released_reserves_afresh() {
    let env = Env::with_ten_of_a();
    let body = json!({"user_id": "u", "items": [{"sku": "A", "quantity": 4}]});
    // The crashed holder's reservation exists but was released since (it expired).
    let rid0 = crashed_holder(&env, "late", &body);
    let rel = env.post_internal(&format!("/api/stock/reservations/{rid0}/release"));
    assert_eq!(rel.status, 200, "{}", rel.text());
    assert_eq!(env.levels("A"), (10, 0, 0));

    let retry = env.order(Some("late"), &body);
    assert_eq!(retry.status, 201, "{}\n{}", retry.text(), env.stderr());
    assert_eq!(env.levels("A"), (6, 4, 0), "reserved once, under a new id");
    let rows = env.sql(&format!(
        "SELECT reservation_id = '{rid0}' AS reused FROM orders"
    ));
    assert_eq!(rows, vec![json!({"reused": 0})]);
}

/// The envelopes in the `events:orders` stream, oldest first (`redis-cli --raw XRANGE`: id,
/// field `m`, its JSON, per entry).
fn stream_messages(env: &Env) -> Vec<Value> {
    let out = env
        .redis
        .cli(&["--raw", "XRANGE", "events:orders", "-", "+"])
        .expect("XRANGE");
    out.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("a JSON envelope"))
        .collect()
}

#[test]
fn the_repair_pass_relays_the_outbox_in_order_at_least_once() {
    let env = Env::start_without_cron();
    env.put_product("RELAY-A", 100, "EUR", 5);
    let created = env.order_with(
        Some("relay-1"),
        &json!({"user_id": "u", "items": [{"sku": "RELAY-A", "quantity": 1}]}),
        &[("traceparent", TRACEPARENT)],
    );
    assert_eq!(created.status, 201, "{}", created.text());
    let id = created.json()["order_id"].as_str().unwrap().to_owned();
    assert_eq!(env.cancel("u", &id).status, 200);
    // As if both fast paths had failed (Redis unreachable right after each commit), and the
    // relay's grace had passed.
    env.redis.cli(&["DEL", "events:orders"]).unwrap();
    env.forget_sent_messages();
    env.sql("UPDATE outbox SET published_at = NULL, next_attempt_ms = 0");

    let report = env.compensate();
    assert_eq!(report.status, 200, "{}", report.text());
    assert_eq!(
        (
            report.json()["published"].as_i64(),
            report.json()["unpublished"].as_i64()
        ),
        (Some(2), Some(0))
    );
    let sent = stream_messages(&env);
    assert_eq!(sent.len(), 2, "{sent:?}");
    let (first, second) = (&sent[0], &sent[1]);
    assert_eq!(
        (
            first["type"].as_str(),
            first["seq"].as_i64(),
            first["aggregate_id"].as_str()
        ),
        (Some("OrderCreated"), Some(1), Some(id.as_str()))
    );
    assert_eq!(first["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(first["payload"]["order_id"], id.as_str(), "{first}");
    assert_eq!(
        (second["type"].as_str(), second["seq"].as_i64()),
        (Some("OrderCancelled"), Some(2))
    );
    // Every row is stamped with the message id it was sent under; nothing is sent twice.
    let rows = env.sql(&format!(
        "SELECT message_id FROM outbox WHERE aggregate_id = '{id}' AND published_at IS NOT NULL ORDER BY seq"
    ));
    assert_eq!(
        rows,
        vec![
            json!({"message_id": first["message_id"]}),
            json!({"message_id": second["message_id"]})
        ]
    );
    let again = env.compensate();
    assert_eq!(again.json()["published"], 0, "{}", again.text());

    // A message whose stamp was lost (a crash between XADD and the UPDATE) is stamped by the
    // next run without being appended again (publish.lua remembers sent ids)...
    env.sql(&format!(
        "UPDATE outbox SET published_at = NULL WHERE aggregate_id = '{id}' AND seq = 2"
    ));
    assert_eq!(env.compensate().json()["published"], 1);
    assert_eq!(stream_messages(&env).len(), 2);
    // ...and once that memory has expired it is sent again: at least once, receivers drop the
    // duplicate by message id.
    env.sql(&format!(
        "UPDATE outbox SET published_at = NULL WHERE aggregate_id = '{id}' AND seq = 2"
    ));
    env.forget_sent_messages();
    assert_eq!(env.compensate().json()["published"], 1);
    let sent = stream_messages(&env);
    assert_eq!(sent.len(), 3);
    assert_eq!(sent[2]["message_id"], second["message_id"]);
}

#[test]
fn the_compensator_cron_expires_unpaid_orders() {
    // No route is called here: the cron trigger (every 15 s in spin.toml) runs the compensator,
    // whose ring makes the order receiver run its sweep (the expiry) and the stock receiver
    // release what the OrderExpired message names.
    let env = Env::start();
    env.put_product("CRON-A", 100, "EUR", 4);
    let created = env.order(
        Some("cron-expire-1"),
        &json!({"user_id": "u", "items": [{"sku": "CRON-A", "quantity": 3}]}),
    );
    assert_eq!(created.status, 201, "{}", created.text());
    let id = created.json()["order_id"].as_str().unwrap().to_owned();
    assert_eq!(env.levels("CRON-A"), (1, 3, 0));
    env.sql(&format!(
        "UPDATE orders SET expires_ms = 0 WHERE order_id = '{id}'"
    ));
    env.wait_order(&id, std::time::Duration::from_secs(60), |o| {
        o["status"] == "EXPIRED"
    });
    // The stock comes back through the OrderExpired message (stock-events), after the order
    // changed: wait for it rather than read it at once.
    let levels = env.wait_levels("CRON-A", std::time::Duration::from_secs(60), |l| {
        l == (4, 0, 0)
    });
    assert_eq!(levels, (4, 0, 0));
}

#[test]
fn unpaid_orders_expire_and_give_their_stock_back() {
    let env = Env::start_without_cron();
    env.put_product("A", 100, "EUR", 10);
    let body = json!({"user_id": "u", "items": [{"sku": "A", "quantity": 2}]});
    let due = env.order(Some("expire-1"), &body);
    let fresh = env.order(Some("expire-2"), &body);
    assert_eq!((due.status, fresh.status), (201, 201));
    let due_id = due.json()["order_id"].as_str().unwrap().to_owned();
    let fresh_id = fresh.json()["order_id"].as_str().unwrap().to_owned();
    assert_eq!(env.levels("A"), (6, 4, 0));
    // The payment window of the first order is over (set in the database: no waiting).
    env.sql(&format!(
        "UPDATE orders SET expires_ms = 0 WHERE order_id = '{due_id}'"
    ));

    let report = env.compensate();
    assert_eq!(report.status, 200, "{}\n{}", report.text(), env.stderr());
    assert_eq!(report.json()["expired_orders"], 1);
    assert_eq!(report.json()["released"], 1);
    let got = env.get_order(&due_id).json();
    assert_eq!(
        (got["status"].as_str(), got["version"].as_i64()),
        (Some("EXPIRED"), Some(2))
    );
    let other = env.get_order(&fresh_id).json();
    assert_eq!(other["status"], "PENDING_PAYMENT");
    assert_eq!(env.levels("A"), (8, 2, 0), "only the expired order's units");
    let rows = env.sql(&format!(
        "SELECT type, seq FROM outbox WHERE aggregate_id = '{due_id}' ORDER BY seq"
    ));
    assert_eq!(
        rows,
        vec![
            json!({"type": "OrderCreated", "seq": 1}),
            json!({"type": "OrderExpired", "seq": 2})
        ]
    );
    // An expired order cannot be cancelled; a second run changes nothing.
    assert_problem(&env.cancel("u", &due_id), 409, None);
    let again = env.compensate().json();
    assert_eq!(
        (again["expired_orders"].as_i64(), again["released"].as_i64()),
        (Some(0), Some(0))
    );
    assert_eq!(env.levels("A"), (8, 2, 0));
}

#[test]
fn stock_down_during_creation_is_503_and_the_same_key_succeeds_afterwards() {
    let env = Env::start_without_cron();
    env.put_product("DOWN-A", 500, "EUR", 5);
    env.migrate_orders();
    let body = json!({"user_id": "u", "items": [{"sku": "DOWN-A", "quantity": 2}]});
    // The stock store fails under the stock component only, while the order's Redis (its
    // lease) works: the reservation's key holds a value of the wrong type, so reserve.lua's
    // first command fails before anything moves. The request takes its claim, then the
    // reserve fails.
    let rid0 = claim_key("u", "down-key").reservation_id(0);
    let rkey = format!("stock:reservation:{rid0}");
    env.cli(&["SET", &rkey, "not-a-reservation"]);
    let down = env.order(Some("down-key"), &body);
    assert_problem(&down, 503, None);
    assert!(
        env.stderr().contains("stock: redis reserve"),
        "the stock component's store failed, not the claim:\n{}",
        env.stderr()
    );
    // The claim was taken and handed back for the same attempt (the reservation may exist).
    assert_eq!(
        env.sql("SELECT state, attempt FROM idempotency_keys WHERE idem_key = 'down-key'"),
        vec![json!({"state": "failed", "attempt": 0})]
    );
    assert_eq!(
        env.cli(&["ZCARD", OPEN_LEASES]).trim(),
        "0",
        "lease dropped"
    );
    assert_eq!(env.levels("DOWN-A"), (5, 0, 0), "nothing was reserved");

    env.cli(&["DEL", &rkey]);
    let retry = env.order(Some("down-key"), &body);
    assert_eq!(retry.status, 201, "{}\n{}", retry.text(), env.stderr());
    assert_eq!(env.levels("DOWN-A"), (3, 2, 0), "reserved once");
    assert_eq!(env.count_rows("orders"), 1);
    assert_eq!(
        env.reservation_of(&retry.json()),
        rid0,
        "the same attempt's id"
    );
}

#[test]
fn insufficient_stock_then_a_restock_then_the_same_key_succeeds() {
    let env = Env::start_without_cron();
    env.put_product("RESTOCK-A", 500, "EUR", 1);
    let body = json!({"user_id": "u", "items": [{"sku": "RESTOCK-A", "quantity": 3}]});
    let short = env.order(Some("restock-key"), &body);
    assert_eq!(
        assert_problem(&short, 409, None)["skus"],
        json!(["RESTOCK-A"])
    );
    let adjusted = env.adjust_stock(
        "RESTOCK-A",
        &json!({"adjustment_id": "restock-1", "delta": 5, "reason": "delivery"}),
    );
    assert_eq!(adjusted.status, 201, "{}", adjusted.text());
    let retry = env.order(Some("restock-key"), &body);
    assert_eq!(retry.status, 201, "{}", retry.text());
    assert_eq!(env.levels("RESTOCK-A"), (3, 3, 0));
}

#[test]
fn a_validation_error_stores_nothing_and_leaves_the_key_usable() {
    let env = Env::start_without_cron();
    env.put_product("VALID-A", 500, "EUR", 5);
    let bad = json!({"user_id": "u", "items": [{"sku": "VALID-A", "quantity": 0}]});
    assert_problem(
        &env.order(Some("valid-key"), &bad),
        422,
        Some("items[0].quantity"),
    );
    env.migrate_orders();
    assert_eq!(
        env.sql("SELECT COUNT(*) AS n FROM idempotency_keys")[0]["n"],
        0
    );
    let good = json!({"user_id": "u", "items": [{"sku": "VALID-A", "quantity": 1}]});
    let created = env.order(Some("valid-key"), &good);
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(env.levels("VALID-A"), (4, 1, 0));
}

/// A customer cancels an unpaid order just as the repair pass expires it. The two are made to
/// overlap for real: another process holds the orders database's write lock while both run, so
/// the repair pass reads the order as PENDING_PAYMENT (reads are not held back) and stops at
/// its write, the cancel stops at its `BEGIN IMMEDIATE`, and neither has answered when the lock
/// goes ([`race_under_held_lock`]). Then they take the lock in turn, and whichever comes second
/// decides on what the first wrote: the order is settled once (one transition, one message, one
/// release owed), the loser says so (the cancel 409, or the pass expiring nothing), and the
/// stock comes back once. (So far the cancel has always been first in line, so what loses is
/// the pass's update guarded by the version it read under the lock.)
#[test]
fn a_cancel_racing_the_expiry_of_the_same_order_settles_it_once() {
    let env = Env::start_without_cron();
    env.put_product("RACE-A", 500, "EUR", 4);
    let created = env.order(
        Some("race-key"),
        &json!({"user_id": "u", "items": [{"sku": "RACE-A", "quantity": 3}]}),
    );
    assert_eq!(created.status, 201, "{}", created.text());
    let id = created.json()["order_id"].as_str().unwrap().to_owned();
    env.sql(&format!(
        "UPDATE orders SET expires_ms = 0 WHERE order_id = '{id}'"
    ));
    let (cancel, repair) =
        race_under_held_lock(&env, || env.cancel("u", &id), || env.compensate(), || {});
    assert_eq!(repair.status, 200, "{}", repair.text());
    let expired_by_the_pass = repair.json()["expired_orders"].clone();
    let order = env.get_order(&id).json();
    let (settled_by, reason) = match order["status"].as_str() {
        Some("CANCELLED") => {
            assert_eq!(cancel.status, 200, "{}", cancel.text());
            assert_eq!(cancel.json()["status"], "CANCELLED", "{}", cancel.text());
            assert_eq!(expired_by_the_pass, 0, "the pass lost: {}", repair.text());
            ("OrderCancelled", "order-cancelled")
        }
        Some("EXPIRED") => {
            let p = assert_problem(&cancel, 409, None);
            assert_eq!(
                p["type"], "https://errors.spin-shop.dev/invalid-transition",
                "{p}"
            );
            assert_eq!(expired_by_the_pass, 1, "the pass won: {}", repair.text());
            ("OrderExpired", "order-expired")
        }
        other => panic!("neither cancelled nor expired: {other:?} {order}"),
    };
    assert_eq!(order["version"], 2, "one transition: {order}");
    let messages = env.sql(&format!(
        "SELECT type FROM outbox WHERE aggregate_id = '{id}' AND type IN ('OrderCancelled', 'OrderExpired')"
    ));
    assert_eq!(messages, vec![json!({"type": settled_by})]);
    assert_eq!(
        env.sql(&format!(
            "SELECT reason FROM pending_releases WHERE order_id = '{id}'"
        )),
        vec![json!({"reason": reason})],
        "one release owed, by the winner"
    );
    env.wait_levels("RACE-A", std::time::Duration::from_secs(20), |l| {
        l == (4, 0, 0)
    });
}

#[test]
fn two_overlapping_repair_passes_expire_each_order_once() {
    let env = Env::start_without_cron();
    env.put_product("PASS-A", 100, "EUR", 10);
    for i in 0..6 {
        let r = env.order(
            Some(&format!("pass-{i}")),
            &json!({"user_id": "u", "items": [{"sku": "PASS-A", "quantity": 1}]}),
        );
        assert_eq!(r.status, 201, "{}", r.text());
    }
    env.sql("UPDATE orders SET expires_ms = 0");
    let barrier = Barrier::new(2);
    let reports: Vec<Value> = std::thread::scope(|s| {
        let runs: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    let r = env.compensate();
                    assert_eq!(r.status, 200, "{}", r.text());
                    r.json()
                })
            })
            .collect();
        runs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let expired: i64 = reports
        .iter()
        .map(|r| r["expired_orders"].as_i64().unwrap())
        .sum();
    assert_eq!(expired, 6, "{reports:?}");
    assert_eq!(
        env.sql("SELECT COUNT(*) AS n FROM outbox WHERE type = 'OrderExpired'")[0]["n"],
        6
    );
    assert_eq!(
        env.sql("SELECT COUNT(*) AS n FROM orders WHERE status = 'EXPIRED' AND version = 2")[0]
            ["n"],
        6
    );
    env.wait_levels("PASS-A", std::time::Duration::from_secs(20), |l| {
        l == (10, 0, 0)
    });
}

#[test]
fn an_order_whose_total_would_pass_2_pow_53_is_refused_and_reserves_nothing() {
    let env = Env::start_without_cron();
    // The highest price JSON clients read exactly; two of them total more than that.
    let max = (1_i64 << 53) - 1;
    env.put_product("BIG-A", max, "EUR", 5);
    let body = json!({"user_id": "u", "items": [{"sku": "BIG-A", "quantity": 2}]});
    let refused = env.order(Some("big-key"), &body);
    assert_problem(&refused, 422, Some("items"));
    // The reservation made before pricing is handed back at once.
    env.wait_levels("BIG-A", std::time::Duration::from_secs(20), |l| {
        l == (5, 0, 0)
    });
    assert_eq!(env.sql("SELECT COUNT(*) AS n FROM orders")[0]["n"], 0);
    let one = env.order(
        Some("big-one"),
        &json!({"user_id": "u", "items": [{"sku": "BIG-A", "quantity": 1}]}),
    );
    assert_eq!(one.status, 201, "{}", one.text());
    assert_eq!(one.json()["total"], max);
}

#[test]
fn a_failed_order_write_whose_release_is_not_recorded_is_finished_by_the_compensator() {
    let env = Env::start_without_cron();
    env.put_product("A", 100, "EUR", 5);
    env.migrate_orders();
    // Two real faults in the database: it refuses the order, and it refuses to record the
    // release as done (any UPDATE of pending_releases), so the owed release stays open although
    // the stock call went through.
    refuse_order_writes(&env);
    env.sql(
        "CREATE TRIGGER e2e_refuse_release_stamp BEFORE UPDATE ON pending_releases \
         BEGIN SELECT RAISE(ABORT, 'forced failure of the release bookkeeping'); END;",
    );
    let body = json!({"user_id": "u", "items": [{"sku": "A", "quantity": 2}]});
    let resp = env.order(Some("owed-key"), &body);
    let p = assert_problem(&resp, 503, None);
    assert_eq!(p["reservation_released"], true, "{p}");
    let rid0 = claim_key("u", "owed-key").reservation_id(0);
    assert_eq!(
        env.sql("SELECT reservation_id, reason, released_ms IS NULL AS open FROM pending_releases"),
        vec![json!({"reservation_id": rid0, "reason": "order-write-failed", "open": 1})],
        "the release is still owed as far as the order context knows"
    );
    assert_eq!(
        env.sql("SELECT state, attempt FROM idempotency_keys WHERE idem_key = 'owed-key'"),
        vec![json!({"state": "failed", "attempt": 1})]
    );
    // The ReservationReleaseOwed message travels too; the stock receiver's release of an
    // already released reservation moves nothing.
    assert_eq!(
        env.sql("SELECT COUNT(*) AS n FROM outbox WHERE type = 'ReservationReleaseOwed'")[0]["n"],
        1
    );
    assert_eq!(env.levels("A"), (5, 0, 0));

    // The database takes writes again: the compensator retries the release (the stock
    // component answers a released reservation with 200) and closes the row.
    env.sql("DROP TRIGGER e2e_refuse_release_stamp");
    let report = env.compensate();
    assert_eq!(report.status, 200, "{}\n{}", report.text(), env.stderr());
    let report = report.json();
    assert_eq!(
        (
            report["released"].as_i64(),
            report["still_pending"].as_i64()
        ),
        (Some(1), Some(0)),
        "{report}"
    );
    assert_eq!(
        env.sql("SELECT COUNT(*) AS n FROM pending_releases WHERE released_ms IS NULL")[0]["n"],
        0
    );
    assert_eq!(
        env.levels("A"),
        (5, 0, 0),
        "released once: no unit came back twice"
    );

    // The same key succeeds afterwards, under the next attempt's reservation.
    allow_order_writes(&env);
    let retry = env.order(Some("owed-key"), &body);
    assert_eq!(retry.status, 201, "{}\n{}", retry.text(), env.stderr());
    assert_eq!(env.levels("A"), (3, 2, 0));
    let rid1 = claim_key("u", "owed-key").reservation_id(1);
    assert_eq!(
        env.sql("SELECT reservation_id FROM orders"),
        vec![json!({"reservation_id": rid1})]
    );
}

#[test]
fn a_cancel_whose_release_fails_is_finished_by_a_second_cancel_or_the_compensator() {
    let mut env = Env::start_without_cron();
    env.put_product("A", 100, "EUR", 10);
    let body = json!({"user_id": "u", "items": [{"sku": "A", "quantity": 2}]});
    let mut ids = Vec::new();
    for key in ["cancel-down-1", "cancel-down-2"] {
        let created = env.order(Some(key), &body);
        assert_eq!(created.status, 201, "{}", created.text());
        ids.push(created.json()["order_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(env.levels("A"), (6, 4, 0));

    // Redis (the stock component's store) is down while both orders are cancelled: each cancel
    // is committed and answered, and its release stays owed, explained.
    env.0.redis.stop_saving().expect("stop redis-server");
    for id in &ids {
        let cancelled = env.cancel("u", id);
        assert_eq!(
            cancelled.status,
            200,
            "{}\n{}",
            cancelled.text(),
            env.stderr()
        );
        let order = cancelled.json();
        assert_eq!(
            (order["status"].as_str(), order["version"].as_i64()),
            (Some("CANCELLED"), Some(2))
        );
    }
    let owed = env.sql(
        "SELECT reason, attempts, last_error IS NOT NULL AS explained FROM pending_releases \
         WHERE released_ms IS NULL ORDER BY order_id",
    );
    assert_eq!(
        owed,
        vec![json!({"reason": "order-cancelled", "attempts": 1, "explained": 1}); 2]
    );
    env.0.redis.restart().expect("restart redis-server");
    assert_eq!(
        env.levels("A"),
        (6, 4, 0),
        "nothing released while Redis was down"
    );

    // Cancelling again answers the same order and retries the owed release.
    let again = env.cancel("u", &ids[0]);
    assert_eq!(again.status, 200, "{}\n{}", again.text(), env.stderr());
    assert_eq!(again.json()["version"], 2, "no second state change");
    assert_eq!(env.levels("A"), (8, 2, 0));
    let open = |id: &str| {
        env.sql(&format!(
            "SELECT COUNT(*) AS n FROM pending_releases WHERE order_id = '{id}' AND released_ms IS NULL"
        ))[0]["n"]
            .clone()
    };
    assert_eq!((open(&ids[0]), open(&ids[1])), (json!(0), json!(1)));

    // The other one is finished by the compensator.
    let report = env.compensate();
    assert_eq!(report.status, 200, "{}\n{}", report.text(), env.stderr());
    let report = report.json();
    assert_eq!(
        (
            report["released"].as_i64(),
            report["still_pending"].as_i64()
        ),
        (Some(1), Some(0)),
        "{report}"
    );
    assert_eq!(open(&ids[1]), json!(0));
    assert_eq!(env.levels("A"), (10, 0, 0), "each released once");
}

/// Lifts a Redis write pause when dropped, so a failing test never leaves requests hanging.
/// Another process holding the write lock of customer `u`'s shard of the orders database
/// (sqlite3 in a transaction), so the order component's write transaction for `u` waits; what
/// it writes lands before that write.
struct HeldWriteLock {
    sqlite3: std::process::Child,
    out: std::io::BufReader<std::process::ChildStdout>,
}

impl HeldWriteLock {
    fn take(env: &Env) -> Self {
        use std::process::{Command, Stdio};
        let mut sqlite3 = Command::new("sqlite3")
            .arg(env.shard_file_of("u"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("sqlite3");
        let out = std::io::BufReader::new(sqlite3.stdout.take().expect("stdout"));
        let mut held = HeldWriteLock { sqlite3, out };
        held.run("BEGIN IMMEDIATE;");
        held
    }

    /// Runs `sql` and waits until sqlite3 has.
    fn run(&mut self, sql: &str) {
        use std::io::{BufRead, Write};
        let stdin = self.sqlite3.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{sql}\nSELECT 'done';").expect("write sql");
        let mut line = String::new();
        self.out.read_line(&mut line).expect("read");
        assert_eq!(line.trim(), "done", "sqlite3 ran {sql}");
    }

    /// Commits what was written under the lock, and lets the lock go.
    fn commit(self) {
        self.end("COMMIT;");
    }

    /// Lets the lock go, writing nothing.
    fn rollback(self) {
        self.end("ROLLBACK;");
    }

    fn end(mut self, sql: &str) {
        self.run(sql);
        drop(self.sqlite3.stdin.take());
        assert!(self.sqlite3.wait().expect("sqlite3").success());
    }
}

const WAIT_FOR_LEASE: std::time::Duration = std::time::Duration::from_secs(20);

/// How long both contenders of a race wait, unanswered, on a write lock another process holds:
/// far longer than either takes unhindered (milliseconds), well within the 5 s a writer waits
/// for the lock before it fails ("database is locked").
const RACE_HOLD: std::time::Duration = std::time::Duration::from_millis(1500);

/// Runs `a` and `b` at once while another process holds the orders database's write lock
/// ([`HeldWriteLock`]), and lets the lock go only after [`RACE_HOLD`] (and `while_held`, which
/// may wait for a sign of progress): neither contender can answer without writing, so both are
/// in flight together, each stopped at its write, and they take the lock in turn when it goes.
/// Asserts that neither had answered under the lock (so the race really overlapped, instead of
/// one finishing before the other started), and returns both answers.
fn race_under_held_lock<A: Send, B: Send>(
    env: &Env,
    a: impl FnOnce() -> A + Send,
    b: impl FnOnce() -> B + Send,
    while_held: impl FnOnce(),
) -> (A, B) {
    let lock = HeldWriteLock::take(env);
    let (answers, unanswered) = std::thread::scope(|s| {
        let started = std::time::Instant::now();
        let (a, b) = (s.spawn(a), s.spawn(b));
        while_held();
        std::thread::sleep(RACE_HOLD.saturating_sub(started.elapsed()));
        let unanswered = (!a.is_finished(), !b.is_finished());
        lock.rollback();
        ((a.join().unwrap(), b.join().unwrap()), unanswered)
    });
    assert_eq!(
        unanswered,
        (true, true),
        "both contenders must still wait for the write lock when it goes\n{}",
        env.stderr()
    );
    answers
}

#[test]
fn a_request_overtaken_after_its_lease_cannot_complete_and_its_reservation_is_released() {
    let env = Env::with_ten_of_a();
    let body = json!({"user_id": "u", "items": [{"sku": "A", "quantity": 2}]});
    let rid0 = claim_key("u", "lease-key").reservation_id(0);

    // The request takes the key's lease and reserves, then waits for the write lock another
    // process holds. As if it had stalled past its lease, the lease runs out (deleted) and the
    // sweep settles its stale claim meanwhile: the claim fails over to the next attempt and the
    // reservation is owed back, written (as store/claims.rs and store/releases.rs write them)
    // under that lock.
    let mut lock = HeldWriteLock::take(&env);
    let late = std::thread::scope(|s| {
        let late = s.spawn(|| env.order(Some("lease-key"), &body));
        e2e::wait_for(WAIT_FOR_LEASE, "the request's reservation", || {
            (env.levels("A") == (8, 2, 0)).then_some(())
        });
        env.cli(&["DEL", &lease_key("u", "lease-key")]);
        lock.run(&claim_row("lease-key", &body, "failed", 1));
        lock.run(&format!(
            "INSERT INTO pending_releases (reservation_id, order_id, reason, created_ms) \
             VALUES ('{rid0}', NULL, 'claim-abandoned', 0);"
        ));
        lock.commit();
        late.join().unwrap()
    });

    // The late holder finds its claim moved on: it neither writes nor releases the reservation,
    // which the sweep owes back now.
    let p = assert_problem(&late, 409, Some("Idempotency-Key"));
    assert_eq!(
        p["type"], "https://errors.spin-shop.dev/request-in-progress",
        "{p}"
    );
    assert_eq!(env.sql("SELECT COUNT(*) AS n FROM orders")[0]["n"], 0);
    assert_eq!(
        env.levels("A"),
        (8, 2, 0),
        "reserved, not released by the late holder"
    );
    assert_eq!(
        env.sql("SELECT reservation_id, reason FROM pending_releases"),
        vec![json!({"reservation_id": rid0, "reason": "claim-abandoned"})]
    );
    assert_eq!(
        env.cli(&["ZCARD", OPEN_LEASES]).trim(),
        "0",
        "the late holder dropped its open lease"
    );

    // The client's retry reserves afresh under the next attempt; the owed release gives the
    // first reservation back.
    let retry = env.order(Some("lease-key"), &body);
    assert_eq!(retry.status, 201, "{}\n{}", retry.text(), env.stderr());
    let rid1 = claim_key("u", "lease-key").reservation_id(1);
    assert_eq!(
        env.sql("SELECT reservation_id FROM orders"),
        vec![json!({"reservation_id": rid1})]
    );
    assert_eq!(env.compensate().json()["released"], 1);
    assert_eq!(
        env.levels("A"),
        (8, 2, 0),
        "one reservation left: the order's"
    );
    assert_eq!(
        env.sql("SELECT state FROM idempotency_keys WHERE idem_key = 'lease-key'"),
        vec![json!({"state": "completed"})]
    );
}

/// A request claimed the key long ago, reserved, and died; its client comes back just as the
/// repair pass abandons the claim. The two are made to overlap for real: another process holds
/// the orders database's write lock while both run, so the repair pass stops at the write that
/// gives the stale lease's claim up, and the retry takes the key's lease over (seen in Redis),
/// reserves (the same reservation: attempt 0) and stops at the write of its order; neither has
/// answered when the lock goes ([`race_under_held_lock`]). Then they take the lock in turn and
/// the second finds the first's write: either the retry's order keeps attempt 0's reservation
/// and the pass gives nothing up, or the pass owes attempt 0's reservation back once and the
/// retry reserves afresh under attempt 1. One order, one `OrderCreated`, one release owed at
/// most, and exactly the order's units stay reserved. (So far the pass, which calls no other
/// component first, has always been first in line: the retry's write finds its claim given up
/// and the retry decides again.)
#[test]
fn the_abandon_step_racing_a_retry_of_the_same_key_settles_it_once() {
    let env = Env::with_ten_of_a();
    let body = json!({"user_id": "u", "items": [{"sku": "A", "quantity": 2}]});
    let rid0 = crashed_holder(&env, "abandon-race", &body);
    let (report, retry) = race_under_held_lock(
        &env,
        || env.compensate(),
        || env.order(Some("abandon-race"), &body),
        || {
            // The dead holder's open lease and the retry's: it is past its claim step.
            e2e::wait_for(
                std::time::Duration::from_secs(3),
                "the retry's lease",
                || (env.cli(&["ZCARD", OPEN_LEASES]).trim() == "2").then_some(()),
            );
        },
    );
    assert_eq!(report.status, 200, "{}\n{}", report.text(), env.stderr());
    assert_eq!(retry.status, 201, "{}\n{}", retry.text(), env.stderr());
    let report = report.json();

    let orders = env.sql("SELECT reservation_id FROM orders");
    assert_eq!(orders.len(), 1, "created once: {orders:?}");
    assert_eq!(
        env.sql("SELECT COUNT(*) AS n FROM outbox WHERE type = 'OrderCreated'")[0]["n"],
        1
    );
    let owed = env.sql("SELECT reservation_id, reason FROM pending_releases");
    let rid1 = claim_key("u", "abandon-race").reservation_id(1);
    if orders[0]["reservation_id"] == json!(rid0) {
        // The retry took the claim first: the abandon step's guarded update found it retaken.
        assert_eq!(report["abandoned_claims"], 0, "{report}");
        assert_eq!(owed, Vec::<Value>::new(), "its reservation is the order's");
    } else {
        // The abandon step won: the old reservation is owed once, the retry reserved afresh.
        assert_eq!(orders[0]["reservation_id"], json!(rid1), "{orders:?}");
        assert_eq!(report["abandoned_claims"], 1, "{report}");
        assert_eq!(
            owed,
            vec![json!({"reservation_id": rid0, "reason": "claim-abandoned"})]
        );
    }
    assert_eq!(
        env.sql("SELECT COUNT(*) AS n FROM outbox WHERE type = 'ReservationReleaseOwed'")[0]["n"],
        report["abandoned_claims"],
        "a release message only from the pass that won: {report}"
    );
    // Whoever won, exactly the order's units stay reserved and none came back twice.
    env.wait_levels("A", std::time::Duration::from_secs(20), |l| l == (8, 2, 0));
    assert_eq!(
        env.sql("SELECT state FROM idempotency_keys WHERE idem_key = 'abandon-race'"),
        vec![json!({"state": "completed"})]
    );
}

#[test]
fn a_failed_order_write_whose_release_fails_too_is_finished_by_the_compensator() {
    let env = Env::with_ten_of_a();
    let body = json!({"user_id": "u", "items": [{"sku": "A", "quantity": 2}]});
    // A request reserved under "full-key" and died before writing; its client retries after
    // the lease. The retry takes the lease and reuses that reservation (a read at the stock
    // component); its write waits for a lock another process holds, Redis fills up meanwhile,
    // and the write fails: the release after it cannot write to Redis either.
    let rid0 = crashed_holder(&env, "full-key", &body);
    refuse_order_writes(&env);
    let lock = HeldWriteLock::take(&env);
    let resp = std::thread::scope(|s| {
        let retry = s.spawn(|| env.order(Some("full-key"), &body));
        e2e::wait_for(WAIT_FOR_LEASE, "the retry's lease", || {
            (env.cli(&["ZCARD", OPEN_LEASES]).trim() == "2").then_some(())
        });
        env.redis_memory_full();
        lock.rollback();
        retry.join().unwrap()
    });
    env.redis_memory_freed();
    let p = assert_problem(&resp, 503, None);
    assert_eq!(p["reservation_released"], false, "{p} {}", env.stderr());
    assert_eq!(env.levels("A"), (8, 2, 0), "still reserved");
    assert_eq!(
        env.sql(
            "SELECT reservation_id, reason, attempts, last_error IS NOT NULL AS explained \
             FROM pending_releases WHERE released_ms IS NULL"
        ),
        vec![
            json!({"reservation_id": rid0, "reason": "order-write-failed", "attempts": 1, "explained": 1})
        ],
        "owed, for the compensator"
    );
    assert_eq!(
        env.sql("SELECT state, attempt FROM idempotency_keys WHERE idem_key = 'full-key'"),
        vec![json!({"state": "failed", "attempt": 1})]
    );

    // Redis takes writes again. First the message path alone, with no repair route called:
    // the relay sends the ReservationReleaseOwed the failed request wrote, and the stock
    // receiver releases the reservation.
    let owed_messages = "SELECT COUNT(*) AS n FROM outbox WHERE type = 'ReservationReleaseOwed'";
    assert_eq!(env.sql(owed_messages)[0]["n"], 1);
    let wait = std::time::Duration::from_secs(30);
    e2e::wait_for(wait, "the relay sent the ReservationReleaseOwed", || {
        env.compensator_run();
        let stream = env.cli(&["XRANGE", "events:orders", "-", "+"]);
        let sent = stream.contains("ReservationReleaseOwed") && stream.contains(&rid0);
        sent.then_some(()).or_else(|| {
            std::thread::sleep(std::time::Duration::from_millis(250));
            None
        })
    });
    env.wait_stock_took("ReservationReleaseOwed", &rid0, wait);
    assert_eq!(
        env.levels("A"),
        (10, 0, 0),
        "released by the stock receiver"
    );
    let still_owed = "SELECT COUNT(*) AS n FROM pending_releases WHERE released_ms IS NULL";
    assert_eq!(
        env.sql(still_owed)[0]["n"],
        1,
        "the order context closes its row itself"
    );

    // Then the repair route closes the row: the stock component answers the released
    // reservation with 200, and nothing moves twice.
    let report = env.compensate();
    assert_eq!(report.status, 200, "{}\n{}", report.text(), env.stderr());
    let report = report.json();
    assert_eq!(
        (
            report["released"].as_i64(),
            report["still_pending"].as_i64()
        ),
        (Some(1), Some(0)),
        "{report}"
    );
    assert_eq!(env.levels("A"), (10, 0, 0));
    assert_eq!(env.sql(still_owed)[0]["n"], 0);

    // The same key succeeds once the database takes orders again, under the next attempt.
    allow_order_writes(&env);
    let retry = env.order(Some("full-key"), &body);
    assert_eq!(retry.status, 201, "{}\n{}", retry.text(), env.stderr());
    assert_eq!(env.levels("A"), (8, 2, 0));
    let rid1 = claim_key("u", "full-key").reservation_id(1);
    assert_eq!(
        env.sql("SELECT reservation_id FROM orders"),
        vec![json!({"reservation_id": rid1})]
    );
}

/// A request reads no claim for its key, and before it takes the key's lease another request
/// with the same key (another body) finishes: under the lease the request reads the row again
/// and decides again. It is 422 (the key was used for another body), never that request's stored
/// response, and it reserves nothing. The other request's finish is planted with sqlite3 while
/// the first waits for its lease (Redis holds writes back: `CLIENT PAUSE WRITE`).
#[test]
fn a_request_whose_key_is_finished_by_another_body_meanwhile_is_422() {
    let env = Env::with_ten_of_a();
    let body = json!({"user_id": "u", "items": [{"sku": "A", "quantity": 2}]});
    let other = json!({"user_id": "u", "items": [{"sku": "A", "quantity": 5}]});
    // The customer token is verified and remembered here (a customer route that uses Redis: no
    // Idempotency-Key, 400), so the request's identity check only reads.
    let bearer = format!("Bearer {}", e2e::customer_token("u"));
    let auth = [("authorization", bearer.as_str())];
    let warm = env.app.send("POST", "/api/orders", &auth, Some(b"{}"));
    assert_eq!(warm.expect("POST").status, 400);

    let resp = std::thread::scope(|s| {
        env.pause_redis_writes();
        let request = s.spawn(|| env.order_with(Some("swap-key"), &body, &auth));
        e2e::wait_for(WAIT_FOR_LEASE, "the request waiting for its lease", || {
            (env.redis_blocked_clients() == 1).then_some(())
        });
        env.sql_for("u", &claim_row("swap-key", &other, "completed", 0));
        env.unpause_redis();
        request.join().unwrap()
    });
    assert_problem(&resp, 422, Some("Idempotency-Key"));
    assert_eq!(env.levels("A"), (10, 0, 0), "nothing reserved");
    assert_eq!(
        env.cli(&["ZCARD", OPEN_LEASES]).trim(),
        "0",
        "lease dropped"
    );
    assert_eq!(
        env.cli(&["EXISTS", &lease_key("u", "swap-key")]).trim(),
        "0"
    );
}

/// A request's order write fails after it has stalled past its lease, and meanwhile a retry of
/// the same key took the claim over and wrote its order on the very same reservation (the same
/// attempt): the stalled request must neither owe nor release that reservation. The stall is
/// real: another process holds the orders database's write lock, so the request's write fails
/// after the host's 5 s wait ("database is locked") and its give-back waits again; in between,
/// the retry's win is written under that lock (its claim row `completed` at attempt 0, as
/// store/claims.rs writes it) and the request's lease is gone (ran out).
#[test]
fn a_write_that_fails_after_a_takeover_releases_nothing_of_the_winner() {
    let env = Env::with_ten_of_a();
    let body = json!({"user_id": "u", "items": [{"sku": "A", "quantity": 2}]});
    let rid0 = claim_key("u", "late-fail").reservation_id(0);
    let mut lock = HeldWriteLock::take(&env);
    let resp = std::thread::scope(|s| {
        let request = s.spawn(|| env.order(Some("late-fail"), &body));
        let failed = |log: &str| log.contains("writing order") && log.contains("locked");
        assert!(
            env.app.wait_for_log(WAIT_FOR_LEASE, failed),
            "the request's write never failed\n{}",
            env.stderr()
        );
        env.cli(&["DEL", &lease_key("u", "late-fail")]);
        lock.run(&claim_row("late-fail", &body, "completed", 0));
        lock.commit();
        request.join().unwrap()
    });
    let p = assert_problem(&resp, 503, None);
    assert_eq!(p["reservation_released"], false, "{p}");
    assert_eq!(
        env.levels("A"),
        (8, 2, 0),
        "the winner's reservation is kept"
    );
    assert_eq!(
        env.sql("SELECT COUNT(*) AS n FROM pending_releases")[0]["n"],
        0
    );
    assert_eq!(
        env.sql("SELECT state FROM idempotency_keys WHERE idem_key = 'late-fail'"),
        vec![json!({"state": "completed"})]
    );
    let reserved = env.get_reservation(&rid0).json();
    assert_eq!(reserved["status"], "RESERVED", "{reserved}");
}

/// The app, not the host, puts its databases in WAL mode (spin-host leaves the journal mode to
/// the file, as real Spin does: a new file is in rollback-journal mode). After a repair pass has
/// opened every shard, each shard file answers `wal` to an operator's sqlite3.
#[test]
fn the_app_itself_puts_every_order_shard_in_wal_mode() {
    let env = Env::with_ten_of_a();
    let r = env.compensate();
    assert_eq!(r.status, 200, "{}", r.text());
    for k in 0..env.order_shards {
        let file = env.shard_file(k);
        assert!(file.exists(), "the pass opened shard {k}");
        assert_eq!(
            env.sql_in(&e2e::shard_label(k), "PRAGMA journal_mode"),
            vec![json!({"journal_mode": "wal"})],
            "shard {k}"
        );
    }
}

/// The app's own wait for the write lock (`shop_adapter::sqlite::Tx::begin`: SQLite's busy
/// handler off, its own pauses) has a deadline: while another process holds the customer's
/// shard past it, the order is refused with a 503 the client may retry, writes nothing, and
/// gives its reservation back (its record of the release cannot be written either, so it
/// releases at once, its lease still held). Once the lock goes, the same key places the order.
#[test]
fn an_order_that_cannot_get_the_write_lock_in_time_is_refused_writes_nothing_and_retries() {
    let env = Env::with_ten_of_a();
    let body = json!({"user_id": "u", "items": [{"sku": "A", "quantity": 2}]});
    let lock = HeldWriteLock::take(&env);
    let refused = env.order(Some("deadline-key"), &body);
    lock.rollback();
    let p = assert_problem(&refused, 503, None);
    assert_eq!(p["reservation_released"], true, "{p}");
    assert_eq!(env.count_rows("orders"), 0, "nothing written");
    assert_eq!(
        env.levels("A"),
        (10, 0, 0),
        "the reservation was given back"
    );
    let retried = env.order(Some("deadline-key"), &body);
    assert_eq!(retried.status, 201, "{}", retried.text());
    assert_eq!(env.levels("A"), (8, 2, 0));
    assert_eq!(env.count_rows("orders"), 1);
}

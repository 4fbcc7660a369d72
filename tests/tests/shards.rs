//! The order context sharded by customer (issue 14): a customer's orders, claims, outbox rows
//! and inbox rows live in the shard their id hashes to; their listing reads that shard only; the
//! receiver, the relay and the admin's reads visit every shard; a changed `order_shards` is
//! refused until `spin-shop-dev reshard` has moved the orders. Each shard's file is read with the
//! sqlite3 CLI, as an operator would.

use std::path::Path;
use std::time::Duration;

use e2e::{admin_auth, assert_problem, relayed, shard_label, stripe_event, Shop};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

/// Two customers the default layout puts in different shards (pinned by shop_domain's tests).
const A: &str = "u1";
const B: &str = "u2";

fn stock(shop: &Shop, sku: &str) {
    let body = json!({"name": "Mug", "price": 1299, "currency": "EUR", "stock": 100});
    let resp = shop.put_product(sku, &body);
    assert!(resp.status == 200 || resp.status == 201, "{}", resp.text());
}

/// A new order of one `sku` for `user` under `key`; asserts 201.
fn order(shop: &Shop, user: &str, key: &str, sku: &str) -> Value {
    let body = json!({"items": [{"sku": sku, "quantity": 1}]});
    let resp = shop.order_as(user, key, &body);
    assert_eq!(resp.status, 201, "{}", resp.text());
    resp.json()
}

/// Per shard index, `query`'s rows in that shard's file alone (every shard migrated first).
fn per_shard(shop: &Shop, query: &str) -> Vec<Vec<Value>> {
    shop.migrate_orders();
    (0..shop.order_shards)
        .map(|k| shop.sql_in(&shard_label(k), query))
        .collect()
}

fn list(shop: &Shop, user: &str) -> testkit::Response {
    shop.get_as(user, "/api/orders")
}

#[test]
fn a_customers_orders_live_in_their_shard_and_their_listing_reads_only_it() {
    let shop = Shop::boot_without_cron();
    let (a, b) = (shop.shard_of(A), shop.shard_of(B));
    assert_ne!(a, b, "the test needs two shards");
    stock(&shop, "SH-1");
    let a1 = order(&shop, A, "a-1", "SH-1");
    order(&shop, A, "a-2", "SH-1");
    order(&shop, B, "b-1", "SH-1");

    // Orders, claims and outbox rows: each in its customer's shard, nowhere else.
    let owners = per_shard(
        &shop,
        "SELECT user_id, COUNT(*) AS n FROM orders GROUP BY user_id",
    );
    let claims = per_shard(
        &shop,
        "SELECT user_id, COUNT(*) AS n FROM idempotency_keys GROUP BY user_id",
    );
    let outbox = per_shard(&shop, "SELECT COUNT(*) AS n FROM outbox");
    for k in 0..shop.order_shards {
        let (rows, n) = match k {
            k if k == a => (vec![json!({"user_id": A, "n": 2})], 2),
            k if k == b => (vec![json!({"user_id": B, "n": 1})], 1),
            _ => (vec![], 0),
        };
        assert_eq!(owners[k as usize], rows, "orders in shard {k}");
        assert_eq!(claims[k as usize], rows, "claims in shard {k}");
        assert_eq!(
            outbox[k as usize],
            vec![json!({"n": n})],
            "OrderCreated rows in shard {k}"
        );
    }

    // With B's shard broken (its orders table renamed away), A's listing and A's own order are
    // still served: they read A's shard only. B's are 503, and so is the admin's read of A's
    // order, which looks the order up in every shard (B's comes first).
    let away = "ALTER TABLE orders RENAME TO orders_away";
    shop.sql_in(&shard_label(b), away);
    let listed = list(&shop, A);
    assert_eq!(listed.status, 200, "{}", listed.text());
    assert_eq!(listed.json()["orders"].as_array().unwrap().len(), 2);
    let id = a1["order_id"].as_str().unwrap();
    assert_eq!(shop.get_as(A, &format!("/api/orders/{id}")).status, 200);
    assert_problem(&list(&shop, B), 503, None);
    assert!(b < a, "B's shard is visited before A's");
    assert_problem(&shop.get_order(id), 503, None);
    shop.sql_in(&shard_label(b), "ALTER TABLE orders_away RENAME TO orders");
    assert_eq!(list(&shop, B).json()["orders"].as_array().unwrap().len(), 1);
    assert_eq!(shop.get_order(id).status, 200);
}

#[test]
fn a_payment_is_applied_in_the_shard_of_its_order_with_its_inbox_row() {
    let shop = Shop::boot_without_cron();
    stock(&shop, "SH-2");
    let paid = order(&shop, A, "pay-a", "SH-2");
    let other = order(&shop, B, "pay-b", "SH-2");
    let id = paid["order_id"].as_str().unwrap();
    let total = paid["total"].as_i64().unwrap();
    let event = stripe_event("evt_shard", "payment_intent.succeeded", id, total, "eur");
    assert_eq!(shop.webhook(&event).status, 200);
    shop.wait_order(id, WAIT, |o| o["status"] == "PAID");

    let k = shop.shard_of(A) as usize;
    let inbox = per_shard(&shop, "SELECT kind FROM inbox");
    let paid_rows = per_shard(
        &shop,
        "SELECT aggregate_id FROM outbox WHERE type = 'OrderPaid'",
    );
    for (i, (inbox, paid_rows)) in inbox.iter().zip(&paid_rows).enumerate() {
        let (want_inbox, want_paid) = match i == k {
            true => (
                vec![json!({"kind": "PaymentSucceeded"})],
                vec![json!({"aggregate_id": id})],
            ),
            false => (vec![], vec![]),
        };
        assert_eq!(inbox, &want_inbox, "inbox of shard {i}");
        assert_eq!(paid_rows, &want_paid, "OrderPaid in shard {i}");
    }
    let untouched = shop.get_order(other["order_id"].as_str().unwrap()).json();
    assert_eq!(untouched["status"], "PENDING_PAYMENT", "{untouched}");
}

#[test]
fn the_relay_sends_the_outbox_rows_of_every_shard() {
    let shop = Shop::boot_without_cron();
    stock(&shop, "SH-3");
    order(&shop, A, "relay-a", "SH-3");
    order(&shop, B, "relay-b", "SH-3");
    // As if both fast paths had failed: due for the relay, never sent.
    shop.sql("UPDATE outbox SET published_at = NULL, next_attempt_ms = 0");
    shop.redis.cli(&["DEL", "events:orders"]).unwrap();
    shop.forget_sent_messages();

    let report = shop.compensator_run();
    for k in 0..shop.order_shards {
        let want = u32::from(k == shop.shard_of(A) || k == shop.shard_of(B));
        let sent = &relayed(&report, &shard_label(k))["sent"];
        assert_eq!(sent, &json!(want), "shard {k}: {report}");
    }
    assert_eq!(
        shop.redis.cli(&["XLEN", "events:orders"]).unwrap().trim(),
        "2"
    );
    let unsent = shop.sql("SELECT COUNT(*) AS n FROM outbox WHERE published_at IS NULL");
    assert_eq!(unsent[0]["n"], 0);
}

/// The shard files the state dir's runtime config maps (as the test kit writes it).
fn shard_files(state: &Path) -> std::collections::BTreeMap<u32, std::path::PathBuf> {
    devtools::shards::shard_files(&state.join("runtime-config.toml")).expect("shard files")
}

fn layout(n: u32) -> shop_domain::shard::ShardCount {
    shop_domain::shard::ShardCount::new(n).unwrap()
}

/// The 503 of a request under a changed `order_shards`: it names the variable, both counts and
/// the migration step.
fn assert_refused(resp: &testkit::Response, recorded: u32, configured: u32) {
    let p = assert_problem(resp, 503, None);
    let detail = p["detail"].as_str().unwrap_or_default();
    for word in ["order_shards", "spin-shop-dev reshard"] {
        assert!(detail.contains(word), "{p}");
    }
    assert_eq!(p["recorded_shards"], recorded, "{p}");
    assert_eq!(p["configured_shards"], configured, "{p}");
}

#[test]
fn changing_order_shards_is_refused_until_reshard_moves_the_orders() {
    let shop = Shop::boot_with_shards(2);
    stock(&shop, "SH-4");
    let customers: Vec<String> = (0..12).map(|i| format!("c{i}")).collect();
    let placed: Vec<(String, String)> = customers
        .iter()
        .map(|c| {
            let o = order(&shop, c, &format!("k-{c}"), "SH-4");
            (c.clone(), o["order_id"].as_str().unwrap().to_owned())
        })
        .collect();
    let filled = per_shard(&shop, "SELECT COUNT(*) AS n FROM orders");
    assert!(
        filled.iter().all(|r| r[0]["n"] != 0),
        "both shards hold orders: {filled:?}"
    );
    let moving = customers
        .iter()
        .filter(|c| layout(2).shard_of(c) != layout(3).shard_of(c));
    assert!(moving.count() > 0, "some customers hash elsewhere under 3");

    // Booted with 3 shards, without the migration step: the start-up check says so, and the app
    // refuses every order request, on an old shard as on the new one (which asks shard 0).
    let shop = shop.restart_with_shards(3, |state| {
        let (lines, ok) = devtools::shards::check(&shard_files(state), layout(3)).unwrap();
        assert!(!ok, "{lines:?}");
    });
    let new_shard = customers.iter().find(|c| shop.shard_of(c) == 2).unwrap();
    for c in [&customers[0], new_shard] {
        assert_refused(&list(&shop, c), 2, 3);
    }
    assert_refused(&shop.get_order(&placed[0].1), 2, 3);
    assert_eq!(
        shop.sql_in(&shard_label(2), "SELECT COUNT(*) AS n FROM orders")[0]["n"],
        0
    );

    // The app stopped, `reshard --from 2 --to 3`: every order is found where its customer now
    // hashes, by its customer and by the admin, and new orders go there too.
    let shop = shop.restart_with_shards(3, |state| {
        let moved = devtools::shards::reshard(&shard_files(state), layout(2), layout(3)).unwrap();
        assert!(moved.orders > 0, "{moved:?}");
        let (lines, ok) = devtools::shards::check(&shard_files(state), layout(3)).unwrap();
        assert!(ok, "{lines:?}");
    });
    assert_all_found(&shop, &placed);
    order(&shop, new_shard, "after-reshard", "SH-4");
    assert_eq!(
        list(&shop, new_shard).json()["orders"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

/// Every `(customer, order id)` is served to its customer, listed, and read by the admin, and
/// lives in the customer's shard alone.
fn assert_all_found(shop: &Shop, placed: &[(String, String)]) {
    let (k, v) = admin_auth();
    for (c, id) in placed {
        let own = shop.get_as(c, &format!("/api/orders/{id}"));
        assert_eq!(own.status, 200, "{c}: {}", own.text());
        let listed = list(shop, c).json();
        assert_eq!(
            listed["orders"][0]["order_id"],
            id.as_str(),
            "{c}: {listed}"
        );
        let admin = shop
            .app
            .send("GET", &format!("/api/orders/{id}"), &[(k, &v)], None);
        assert_eq!(admin.unwrap().status, 200);
        let q = format!("SELECT COUNT(*) AS n FROM orders WHERE order_id = '{id}'");
        let found = per_shard(shop, &q);
        let want: Vec<Value> = (0..shop.order_shards)
            .map(|i| json!(u32::from(i == shop.shard_of(c))))
            .collect();
        assert_eq!(
            found.iter().map(|r| r[0]["n"].clone()).collect::<Vec<_>>(),
            want,
            "{c}"
        );
    }
}

#[test]
fn an_order_shards_outside_one_to_eight_is_a_503_naming_it_not_a_trap() {
    let shop = Shop::boot_with(|b| b.variable("order_shards", "9"));
    let p = assert_problem(&list(&shop, A), 503, None);
    assert_eq!(p["variable"], "order_shards", "{p}");
    let health = shop.app.get("/api/health/order").expect("GET health");
    assert_eq!(health.status, 503, "{}", health.text());
    let report = shop.compensator_run();
    assert!(
        report["errors"].to_string().contains("order_shards"),
        "{report}"
    );
    assert!(shop
        .app
        .stderr()
        .contains("MISCONFIGURED variable order_shards"));
    assert!(
        !shop.app.stderr().contains("panicked"),
        "{}",
        shop.app.stderr()
    );
}

/// A database from before sharding, moved to `orders-shard0` (no layout recorded) and started
/// with 4 shards, would strand every customer who now hashes elsewhere: refused. The documented
/// way (docs/deploy.md): start once with 1 shard (it records that layout), then reshard 1 -> 4.
#[test]
fn a_database_from_before_sharding_is_refused_under_more_shards_until_resharded() {
    let shop = Shop::boot_with_shards(1);
    stock(&shop, "SH-5");
    let placed: Vec<(String, String)> = (0..8)
        .map(|i| {
            let c = format!("old{i}");
            let o = order(&shop, &c, &format!("k-{c}"), "SH-5");
            (c, o["order_id"].as_str().unwrap().to_owned())
        })
        .collect();
    let forget_layout = |state: &Path| {
        let file = state.join(format!("{}.db", shard_label(0)));
        let out = std::process::Command::new("sqlite3")
            .arg(&file)
            .arg("DELETE FROM shard_layout")
            .output()
            .expect("sqlite3");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let shop = shop.restart_with_shards(4, |state| {
        forget_layout(state);
        let (lines, ok) = devtools::shards::check(&shard_files(state), layout(4)).unwrap();
        assert!(!ok, "the start-up check refuses it too: {lines:?}");
    });
    for (c, _) in &placed {
        let p = assert_problem(&list(&shop, c), 503, None);
        assert!(
            p["detail"].as_str().unwrap().contains("records no layout"),
            "{p}"
        );
    }
    let shop = shop.restart_with_shards(1, |_| {});
    assert_eq!(list(&shop, &placed[0].0).status, 200);
    let shop = shop.restart_with_shards(4, |state| {
        let moved = devtools::shards::reshard(&shard_files(state), layout(1), layout(4));
        assert!(moved.unwrap().orders > 0);
    });
    assert_all_found(&shop, &placed);
}

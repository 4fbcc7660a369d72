//! The first requests of a fresh deployment (issue 13 §6): on an empty state dir, 32 concurrent
//! first requests to the order and coupon components all migrate the same empty database at
//! once; every one succeeds (no 503 from the migration race) and each migration is recorded
//! once. Under our host, and under the real Spin CLI when there is one.

use std::sync::{Arc, Barrier};

use e2e::{migration_files, Shop};
use serde_json::json;
use testkit::Response;

const AT_ONCE: usize = 32;

/// Sends `AT_ONCE` requests at once (`send(i)`), each from its own thread; their answers.
fn all_at_once(shop: &Arc<Shop>, send: fn(&Shop, usize) -> Response) -> Vec<Response> {
    let start = Arc::new(Barrier::new(AT_ONCE));
    let threads: Vec<_> = (0..AT_ONCE)
        .map(|i| {
            let (shop, start) = (shop.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                send(&shop, i)
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().expect("request thread"))
        .collect()
}

/// The component's databases have no table yet: the requests below are their first.
fn assert_empty(shop: &Shop, labels: &[String]) {
    for label in labels {
        let file = shop.db_file(label);
        if file.exists() {
            let tables = shop.sql_in(label, "SELECT name FROM sqlite_schema WHERE type = 'table'");
            assert!(tables.is_empty(), "{label} is not empty: {tables:?}");
        }
    }
}

/// The databases of a context: its label, or every shard of the order context.
fn context_labels(shop: &Shop, context: &str) -> Vec<String> {
    match context {
        "orders" => (0..shop.order_shards).map(e2e::shard_label).collect(),
        other => vec![other.to_owned()],
    }
}

fn put_coupon(shop: &Shop, i: usize) -> Response {
    let body = json!({"amount_off": 100, "currency": "EUR"});
    shop.put_coupon(&format!("FIRST{i}"), &body)
}

fn first_customer(i: usize) -> String {
    format!("first-{i}")
}

fn list_orders(shop: &Shop, i: usize) -> Response {
    shop.get_as(&first_customer(i), "/api/orders")
}

/// Both components, one fresh state dir each: every first request answers as it would on a
/// migrated database, and each component's migrations are recorded once.
fn first_requests_all_succeed(boot: fn() -> Option<Shop>) {
    for (label, component, send, status) in [
        (
            "coupons",
            "coupon",
            put_coupon as fn(&Shop, usize) -> Response,
            201,
        ),
        ("orders", "order", list_orders, 200),
    ] {
        let Some(shop) = boot() else {
            return;
        };
        let labels = context_labels(&shop, label);
        assert_empty(&shop, &labels);
        let shop = Arc::new(shop);
        for (i, resp) in all_at_once(&shop, send).iter().enumerate() {
            assert_eq!(resp.status, status, "{label} request {i}: {}", resp.text());
        }
        // Every migration file of the component is recorded (schema_version's primary key
        // already makes each one unique): none was skipped by a request that lost the race. The
        // 32 customers spread over the order context's shards: each shard they reached counts,
        // and shard 0 is always among them (every shard consults it first).
        let mut reached: Vec<&String> = vec![&labels[0]];
        if label == "orders" {
            let shards = (0..AT_ONCE).map(|i| shop.shard_of(&first_customer(i)) as usize);
            reached.extend(shards.map(|k| &labels[k]));
        }
        for label in reached {
            assert_migrated(&shop, label, component);
        }
    }
}

fn assert_migrated(shop: &Shop, label: &str, component: &str) {
    let recorded = shop.sql_in(
        label,
        &format!(
            "SELECT count(*) AS n, max(version) AS latest FROM schema_version \
             WHERE component = '{component}'"
        ),
    );
    let (files, latest) = migration_files(component);
    assert!(
        recorded[0]["n"].as_u64() >= Some(files),
        "{label}: {files} migration files, recorded: {recorded:?}"
    );
    assert_eq!(
        recorded[0]["latest"].as_u64(),
        Some(latest),
        "{label}: not migrated to the last file"
    );
}

#[test]
fn concurrent_first_requests_on_an_empty_database_all_succeed() {
    first_requests_all_succeed(|| Some(Shop::boot_without_cron()));
}

#[test]
fn concurrent_first_requests_on_an_empty_database_all_succeed_under_real_spin() {
    first_requests_all_succeed(Shop::boot_real_spin);
}

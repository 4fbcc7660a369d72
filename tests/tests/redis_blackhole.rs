//! An unreachable Redis fails fast, one request at a time (issue 13 §4).
//!
//! The app reaches Redis through a TCP relay in this test; switched to "blackhole", the relay
//! still accepts connections but answers nothing and forwards nothing, on new connections and on
//! the ones already open: a Redis that is there and never answers (a hung server, a stalled
//! network path). Before, the host connected under one pool-wide lock (a 2 s PING, then a 3 s
//! connect) and every customer request opened Redis for the token cache, so N concurrent reads
//! queued behind each other for N x 5 s.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::{assert_problem, customer_auth, wait_for, Shop};

/// A TCP relay to `upstream` that can be switched to accept and never answer.
struct Relay {
    address: String,
    blackholed: Arc<AtomicBool>,
}

impl Relay {
    fn start(upstream: String) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind relay");
        let address = listener.local_addr().expect("relay address").to_string();
        let blackholed = Arc::new(AtomicBool::new(false));
        let flag = blackholed.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for client in listener.incoming().flatten() {
                let server = match flag.load(Ordering::SeqCst) {
                    false => TcpStream::connect(&upstream).ok(),
                    true => None,
                };
                match server {
                    Some(server) => pipe(client, server, &flag),
                    // Accepted, and kept open without a byte in either direction.
                    None => held.push(client),
                }
            }
        });
        Relay {
            address,
            blackholed,
        }
    }

    fn blackhole(&self, on: bool) {
        self.blackholed.store(on, Ordering::SeqCst);
    }
}

/// Copies both ways between `a` and `b` until either side closes; while blackholed, what is
/// read is dropped.
fn pipe(a: TcpStream, b: TcpStream, blackholed: &Arc<AtomicBool>) {
    for (mut from, mut to) in [
        (a.try_clone().expect("clone"), b.try_clone().expect("clone")),
        (b, a),
    ] {
        let flag = blackholed.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            while let Ok(n @ 1..) = from.read(&mut buf) {
                if !flag.load(Ordering::SeqCst) && to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
    }
}

/// Sends one request per item of `users` at once; returns every answer and how long the batch
/// took.
fn batch(
    shop: &Shop,
    users: &[String],
    send: impl Fn(&Shop, &str) -> testkit::Response + Sync,
) -> (Vec<testkit::Response>, Duration) {
    let started = Instant::now();
    let send = &send;
    let answers = std::thread::scope(|s| {
        let handles: Vec<_> = users
            .iter()
            .map(|u| s.spawn(move || send(shop, u)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("request thread"))
            .collect()
    });
    (answers, started.elapsed())
}

/// Far above one connect timeout (1 s) with the machine busy, far below fifty.
const BATCH_BOUND: Duration = Duration::from_secs(20);

#[test]
fn a_blackholed_redis_costs_reads_nothing_and_writes_one_connect_timeout() {
    let mut shop = Shop::boot_without_cron();
    let relay = Relay::start(shop.redis.host());
    shop.restart_without_cron_with(|b| b.variable("redis_host", relay.address.clone()));
    let users: Vec<String> = (0..50).map(|i| format!("bh-{i}")).collect();
    // The schema is in place (concurrent first requests racing to migrate are another matter),
    // and the shared connection is open and in use when Redis goes silent.
    shop.migrate_orders();
    let health = shop.app.get("/api/health/order").expect("health");
    assert_eq!(health.status, 200, "{}", health.text());
    relay.blackhole(true);

    // Reads: every customer's list is answered, none waits for Redis.
    let (answers, took) = batch(&shop, &users, |shop, u| shop.get_as(u, "/api/orders"));
    for a in &answers {
        assert_eq!(a.status, 200, "{}", a.text());
        assert_eq!(a.json()["orders"], serde_json::json!([]));
    }
    eprintln!("50 concurrent reads, Redis blackholed: {took:?}");
    assert!(took < BATCH_BOUND, "50 reads took {took:?}");

    // Writes need Redis (the Idempotency-Key lease): each is refused with 503, and the batch
    // waits about one connect timeout, not one per request.
    let body = serde_json::json!({"items": [{"sku": "BH-1", "quantity": 1}]});
    let (answers, took) = batch(&shop, &users, |shop, u| {
        shop.order_as(u, &format!("key-{u}"), &body)
    });
    for a in &answers {
        assert_problem(a, 503, None);
    }
    eprintln!("50 concurrent orders, Redis blackholed: {took:?}");
    assert!(
        took < BATCH_BOUND,
        "50 orders took {took:?}\n{}",
        shop.app.stderr()
    );

    // Redis answers again: the app uses it again by itself.
    relay.blackhole(false);
    wait_for(Duration::from_secs(20), "Redis in use again", || {
        let health = shop.app.get("/api/health/order").expect("health");
        (health.status == 200).then_some(())
    });
    // The token cache too: a customer route's verified token is remembered.
    let (_, bearer) = customer_auth("bh-0");
    let probe = shop.app.send(
        "POST",
        "/api/orders",
        &[("authorization", &bearer)],
        Some(b"{}"),
    );
    assert_problem(&probe.expect("POST"), 400, Some("Idempotency-Key"));
    let remembered = shop.cli(&["KEYS", "auth:verified:*"]);
    assert_eq!(remembered.lines().count(), 1, "{remembered:?}");
}

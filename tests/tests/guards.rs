//! Rate limits and circuit breakers (issue 15): shared in Redis by every instance, refusing with
//! 429 / 503 problem+json and the headers clients need, failing open or closed per route kind.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use e2e::{admin_auth, assert_problem, customer_auth, guards_on, wait_for, Shop, NO_ORDER};
use serde_json::{json, Value};
use testkit::{Response, SpinApp};

fn product(sku: &str, stock: i64) -> Value {
    json!({"name": format!("Product {sku}"), "price": 100, "currency": "EUR", "stock": stock})
}

fn order_body(sku: &str) -> Value {
    json!({"items": [{"sku": sku, "quantity": 1}]})
}

/// A header as an integer (panics naming it when it is missing or not one).
fn int_header(resp: &Response, name: &str) -> u64 {
    let v = resp
        .header(name)
        .unwrap_or_else(|| panic!("no {name}: {resp:?}"));
    v.parse()
        .unwrap_or_else(|_| panic!("{name} is not an integer: {v:?}"))
}

/// `GET /api/products/{sku}` on `app`, `n` times from `threads` threads; the statuses.
fn read_products(app: &SpinApp, sku: &str, n: usize, threads: usize) -> Vec<u16> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    (0..n / threads)
                        .map(|_| {
                            app.get(&format!("/api/products/{sku}"))
                                .expect("GET")
                                .status
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

#[test]
fn a_limit_holds_across_two_host_processes_sharing_one_redis() {
    let limit = |b| guards_on(b).variable("rate_limit_product_read_per_client", "5/s burst 20");
    let shop = Shop::boot_with(limit);
    let second = shop.second_app(limit);
    assert_eq!(shop.put_product("TWO-1", &product("TWO-1", 1)).status, 200);

    // Far more reads than the burst, at both processes at once, from one client address.
    let started = shop.redis_time_us();
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| read_products(&shop.app, "TWO-1", 60, 4));
        let b = s.spawn(|| read_products(&second.app, "TWO-1", 60, 4));
        (a.join().unwrap(), b.join().unwrap())
    });
    let elapsed_s = (shop.redis_time_us() - started) as f64 / 1e6;
    let admitted = |v: &[u16]| v.iter().filter(|s| **s == 200).count();
    let limited = |v: &[u16]| v.iter().filter(|s| **s == 429).count();
    let total = admitted(&a) + admitted(&b);
    eprintln!(
        "admitted {} + {} of 120 in {elapsed_s:.2} s (Redis clock)",
        admitted(&a),
        admitted(&b)
    );
    assert_eq!(total + limited(&a) + limited(&b), 120, "{a:?} {b:?}");
    // GCRA admits at most burst + rate x elapsed over any interval (+1: the interval's edges).
    let bound = 20.0 + 5.0 * elapsed_s + 1.0;
    assert!((total as f64) <= bound, "{total} admitted > {bound}");
    assert!(total >= 20, "the burst itself was refused: {total}");
    assert!(
        admitted(&a) > 0 && admitted(&b) > 0,
        "one process admitted nothing"
    );
}

#[test]
fn a_refusal_is_429_with_retry_after_and_ratelimit_headers() {
    let shop = Shop::boot_with(|b| {
        guards_on(b).variable("rate_limit_order_create_per_customer", "1/m burst 2")
    });
    assert_eq!(shop.put_product("RL-1", &product("RL-1", 100)).status, 200);

    for (i, remaining) in [(0, 1), (1, 0)] {
        let resp = shop.order_as("rl-a", &format!("k{i}"), &order_body("RL-1"));
        assert_eq!(resp.status, 201, "{}", resp.text());
        assert_eq!(int_header(&resp, "ratelimit-limit"), 2);
        assert_eq!(int_header(&resp, "ratelimit-remaining"), remaining);
        assert!(int_header(&resp, "ratelimit-reset") >= 1);
    }
    let refused = shop.order_as("rl-a", "k2", &order_body("RL-1"));
    let problem = assert_problem(&refused, 429, None);
    assert!(problem["type"].as_str().unwrap().ends_with("/rate-limited"));
    // One unit refills in 60 s: the client is told to wait, in whole seconds.
    let retry = int_header(&refused, "retry-after");
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert_eq!(int_header(&refused, "ratelimit-limit"), 2);
    assert_eq!(int_header(&refused, "ratelimit-remaining"), 0);
    assert!(int_header(&refused, "ratelimit-reset") >= 1);
    // Nothing was reserved for the refused request; another customer has their own limit.
    assert_eq!(shop.levels("RL-1").0, 98);
    let other = shop.order_as("rl-b", "k0", &order_body("RL-1"));
    assert_eq!(other.status, 201, "{}", other.text());
}

#[test]
fn flash_purchases_are_limited_per_customer_and_per_sale_and_a_refusal_takes_nothing() {
    let shop = Shop::boot_with(|b| {
        guards_on(b)
            .variable("rate_limit_flash_per_customer", "1/m burst 1")
            .variable("rate_limit_flash_sale", "1/m burst 3")
    });
    shop.open_sale("rl-sale", "RL-FLASH", 100, 50, 5);
    let buy = |user: &str, key: &str| shop.purchase(user, "rl-sale", key).expect("purchase");

    let first = buy("fl-a", "k1");
    assert_eq!(first.status, 202, "{}", first.text());
    assert_eq!(int_header(&first, "ratelimit-remaining"), 0);
    // The buyer's own limit refuses their second purchase; the sale's limit is not spent by it.
    let again = buy("fl-a", "k2");
    assert_problem(&again, 429, None);
    assert!(int_header(&again, "retry-after") >= 1);
    assert_eq!(int_header(&again, "ratelimit-limit"), 1);
    for user in ["fl-b", "fl-c"] {
        let resp = buy(user, "k1");
        assert_eq!(resp.status, 202, "{user}: {}", resp.text());
    }
    // The sale's burst of three is spent: a new buyer is refused by the sale's limit.
    let late = buy("fl-d", "k1");
    assert_problem(&late, 429, None);
    assert_eq!(int_header(&late, "ratelimit-limit"), 3);
    // Refused purchases took no unit: exactly the three admitted ones did.
    let sale = shop.get_sale("rl-sale");
    assert_eq!(sale["remaining"], 47, "{sale}");
}

/// `GET path` on `app` over a connection from `source` (any 127.0.0.0/8 address reaches the
/// host's loopback listener, and the host sees it as the client address).
fn get_from(app: &SpinApp, source: &str, path: &str) -> u16 {
    let target: SocketAddr = app
        .url("")
        .trim_start_matches("http://")
        .parse()
        .expect("addr");
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let from: SocketAddr = format!("{source}:0").parse().unwrap();
    socket.bind(&from.into()).expect("bind source address");
    socket.connect(&target.into()).expect("connect");
    let mut stream: TcpStream = socket.into();
    let head = format!("GET {path} HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {answer:?}"))
}

#[test]
fn anonymous_reads_are_limited_per_client_address() {
    let shop = Shop::boot_with(|b| {
        guards_on(b).variable("rate_limit_product_read_per_client", "1/m burst 3")
    });
    assert_eq!(shop.put_product("IP-1", &product("IP-1", 1)).status, 200);
    let path = "/api/products/IP-1";
    let first: Vec<u16> = (0..4)
        .map(|_| get_from(&shop.app, "127.0.0.2", path))
        .collect();
    assert_eq!(first, [200, 200, 200, 429]);
    // Another address has its own limit, untouched by the first one's.
    let second: Vec<u16> = (0..4)
        .map(|_| get_from(&shop.app, "127.0.0.3", path))
        .collect();
    assert_eq!(second, [200, 200, 200, 429]);
    let keys = shop.cli(&["KEYS", "ratelimit:stock.product-read:*"]);
    assert!(
        keys.contains("client:127.0.0.2") && keys.contains("client:127.0.0.3"),
        "{keys}"
    );
}

#[test]
fn with_redis_down_reads_fail_open_and_writes_closed_unless_configured_otherwise() {
    let shop = Shop::boot_with(guards_on);
    shop.migrate_orders();
    let second = shop.second_app(|b| {
        guards_on(b)
            .variable("rate_limit_redis_down_reads", "closed")
            .variable("rate_limit_redis_down_writes", "open")
    });
    let (k, v) = customer_auth("down-1");
    assert_eq!(
        second
            .app
            .send("GET", "/api/orders", &[(k, &v)], None)
            .unwrap()
            .status,
        200
    );
    // Redis goes away (the app's connections are refused from now on).
    let _ = shop.redis.cli(&["SHUTDOWN", "NOSAVE"]);
    let cancel = format!("/api/orders/{NO_ORDER}/cancel");

    // The defaults: an order list (SQLite only) is still served; a cancel is refused.
    let list = shop
        .app
        .send("GET", "/api/orders", &[(k, &v)], None)
        .unwrap();
    assert_eq!(list.status, 200, "{}", list.text());
    let refused = shop.app.send("POST", &cancel, &[(k, &v)], None).unwrap();
    let problem = assert_problem(&refused, 503, None);
    assert!(
        problem["detail"].as_str().unwrap().contains("rate limiter"),
        "{problem}"
    );
    assert!(refused.header("retry-after").is_some());

    // Flipped by the variables: reads closed, writes open (the cancel then finds no order).
    let list = second
        .app
        .send("GET", "/api/orders", &[(k, &v)], None)
        .unwrap();
    assert_problem(&list, 503, None);
    let cancelled = second.app.send("POST", &cancel, &[(k, &v)], None).unwrap();
    assert_problem(&cancelled, 404, None);
}

/// How many reservations the stock component failed at Redis (it logs each one).
fn stock_failures(shop: &Shop) -> usize {
    shop.app.stderr().matches("stock: redis reserve:").count()
}

/// `GET /api/ops/breakers`: the `order.stock` breaker.
fn stock_breaker(shop: &Shop) -> Value {
    let (k, v) = admin_auth();
    let resp = shop
        .app
        .send("GET", "/api/ops/breakers", &[(k, &v)], None)
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    let all = resp.json()["breakers"].clone();
    let found = all
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "order.stock");
    found
        .cloned()
        .unwrap_or_else(|| panic!("no order.stock breaker: {all}"))
}

/// `n` orders of one unit of `sku` at once, each by its own customer; the answers.
fn orders_at_once(shop: &Shop, tag: &str, sku: &str, n: usize) -> Vec<Response> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|i| s.spawn(move || shop.order_as(&format!("{tag}-{i}"), "k", &order_body(sku))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Waits until the breaker's open duration has passed (it shows half-open).
fn wait_half_open(shop: &Shop) {
    wait_for(Duration::from_secs(20), "breaker half-open", || {
        (stock_breaker(shop)["state"] == "half_open").then_some(())
    });
}

#[test]
fn the_breaker_opens_on_a_failing_stock_component_probes_once_and_closes_when_repaired() {
    let shop = Shop::boot_with(|b| {
        guards_on(b).variable("breaker_order_stock", "errors 50% over 10s, min 4, open 2s")
    });
    assert_eq!(
        shop.put_product("BRK-1", &product("BRK-1", 100)).status,
        200
    );
    // The fault, real and from outside: `available` is not a number, so reserve.lua errors and
    // the stock component answers 503 to every reservation of this product.
    shop.cli(&["HSET", "stock:product:BRK-1", "available", "broken"]);

    // Closed: four calls reach the stock component and fail; the fourth opens the breaker.
    for i in 0..4 {
        let resp = shop.order_as(&format!("brk-a{i}"), "k", &order_body("BRK-1"));
        assert_problem(&resp, 503, None);
    }
    assert_eq!(stock_failures(&shop), 4);
    let breaker = stock_breaker(&shop);
    assert_eq!(breaker["state"], "open", "{breaker}");

    // Open: refused at once, naming the breaker, without calling the stock component.
    let refused = shop.order_as("brk-b", "k", &order_body("BRK-1"));
    let problem = assert_problem(&refused, 503, None);
    assert_eq!(problem["breaker"], "order.stock", "{problem}");
    assert!(int_header(&refused, "retry-after") >= 1);
    assert_eq!(stock_failures(&shop), 4);

    // Half-open with the fault still there: of eight requests at once exactly one reaches the
    // stock component (the probe); it fails, so the breaker opens again.
    wait_half_open(&shop);
    let answers = orders_at_once(&shop, "brk-c", "BRK-1", 8);
    assert_eq!(stock_failures(&shop), 5);
    let by_breaker = answers
        .iter()
        .filter(|r| r.text().contains("order.stock"))
        .count();
    assert_eq!(by_breaker, 7, "{answers:?}");
    assert_eq!(stock_breaker(&shop)["state"], "open");

    // Repaired: the next probe succeeds and closes the breaker; orders flow again.
    shop.cli(&["HSET", "stock:product:BRK-1", "available", "100"]);
    wait_half_open(&shop);
    let answers = orders_at_once(&shop, "brk-d", "BRK-1", 4);
    let created = answers.iter().filter(|r| r.status == 201).count();
    assert!(created >= 1, "{answers:?}");
    let breaker = stock_breaker(&shop);
    assert_eq!(breaker["state"], "closed", "{breaker}");
    for i in 0..3 {
        let resp = shop.order_as(&format!("brk-e{i}"), "k", &order_body("BRK-1"));
        assert_eq!(resp.status, 201, "{}", resp.text());
    }
    assert_eq!(stock_failures(&shop), 5);
}

/// `qty` units of `sku` for `user` under key `key`.
fn order_of(shop: &Shop, user: &str, key: &str, sku: &str, qty: i64) -> Response {
    let body = json!({"items": [{"sku": sku, "quantity": qty}]});
    shop.order_as(user, key, &body)
}

/// Asserts a 409 naming hoarding cap `cap`.
fn assert_cap(resp: &Response, cap: &str) {
    let problem = assert_problem(resp, 409, None);
    assert!(
        problem["type"].as_str().unwrap().ends_with("/hoarding-cap"),
        "{problem}"
    );
    assert_eq!(problem["cap"], cap, "{problem}");
}

/// What customer `user` holds, as the stock context counts it: (unpaid orders, units of `sku`).
fn holdings(shop: &Shop, user: &str, sku: &str) -> (i64, i64) {
    let key = format!("stock:holds:{user}");
    let field = |f: &str| shop.cli(&["HGET", &key, f]).trim().parse().unwrap_or(0);
    (field("orders"), field(&format!("sku:{sku}")))
}

#[test]
fn hoarding_caps_stop_one_customer_holding_a_product_and_paying_frees_them() {
    // The caps at their defaults; the customer's rate limit off, as this one customer sends more
    // orders in a row than its burst.
    let shop =
        Shop::boot_with(|b| guards_on(b).variable("rate_limit_order_create_per_customer", "off"));
    assert_eq!(
        shop.put_product("HOARD-1", &product("HOARD-1", 100)).status,
        200
    );
    let sku = "HOARD-1";

    // The scenario: five unpaid orders of 20 units. Each is past the units cap (10).
    for i in 0..5 {
        assert_cap(
            &order_of(&shop, "hoarder", &format!("big-{i}"), sku, 20),
            "units-per-product",
        );
    }
    assert_eq!(shop.levels(sku), (100, 0, 0));

    // Three unpaid orders of 3 units: the fourth order is refused by the unpaid-orders cap.
    let mut orders: Vec<Value> = (0..3)
        .map(|i| {
            let resp = order_of(&shop, "hoarder", &format!("small-{i}"), sku, 3);
            assert_eq!(resp.status, 201, "{}", resp.text());
            resp.json()
        })
        .collect();
    assert_cap(
        &order_of(&shop, "hoarder", "small-3", sku, 1),
        "unpaid-orders",
    );
    assert_eq!(holdings(&shop, "hoarder", sku), (3, 9));

    // Cancelling and reordering cannot get past either cap.
    let cancelled = orders.remove(0);
    let resp = shop.cancel("hoarder", cancelled["order_id"].as_str().unwrap());
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(holdings(&shop, "hoarder", sku), (2, 6));
    assert_cap(
        &order_of(&shop, "hoarder", "re-0", sku, 5),
        "units-per-product",
    );
    let resp = order_of(&shop, "hoarder", "re-1", sku, 4);
    assert_eq!(resp.status, 201, "{}", resp.text());
    orders.push(resp.json());
    assert_cap(&order_of(&shop, "hoarder", "re-2", sku, 1), "unpaid-orders");
    assert_eq!(holdings(&shop, "hoarder", sku), (3, 10));
    assert_eq!(shop.levels(sku), (90, 10, 0));

    // A paid order frees its share of the caps.
    let paid = &orders[0];
    let (id, total) = (
        paid["order_id"].as_str().unwrap(),
        paid["total"].as_i64().unwrap(),
    );
    let event = e2e::stripe_event("evt_hoard", "payment_intent.succeeded", id, total, "eur");
    assert_eq!(shop.webhook(&event).status, 200);
    shop.wait_levels(sku, Duration::from_secs(30), |l| l.2 == 3);
    assert_eq!(holdings(&shop, "hoarder", sku), (2, 7));
    let resp = order_of(&shop, "hoarder", "after-pay", sku, 3);
    assert_eq!(resp.status, 201, "{}", resp.text());
    assert_eq!(holdings(&shop, "hoarder", sku), (3, 10));
}

#[test]
fn concurrent_orders_of_one_customer_never_exceed_the_unpaid_orders_cap() {
    let shop = Shop::boot_with(guards_on);
    assert_eq!(
        shop.put_product("HOARD-2", &product("HOARD-2", 100)).status,
        200
    );
    // Ten at once (within the customer's burst of ten): the cap is counted in the same script
    // as the reservation, so however they interleave, three get through.
    let answers: Vec<Response> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..10)
            .map(|i| {
                let shop = &shop;
                s.spawn(move || order_of(shop, "rush", &format!("rush-{i}"), "HOARD-2", 1))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let created = answers.iter().filter(|r| r.status == 201).count();
    assert_eq!(created, 3, "{answers:?}");
    for refused in answers.iter().filter(|r| r.status != 201) {
        assert_cap(refused, "unpaid-orders");
    }
    assert_eq!(holdings(&shop, "rush", "HOARD-2"), (3, 3));
    assert_eq!(shop.levels("HOARD-2"), (97, 3, 0));
}

#[test]
fn a_stock_call_that_hangs_times_out_counts_as_failed_and_slow_and_opens_the_breaker() {
    let stock_redis = testkit::RedisServer::start().expect("second redis-server");
    let shop = Shop::boot_with_stock_on(&stock_redis, |b| {
        let breaker =
            "errors 50% over 10s, slow 50% over 5s above 300ms, min 2, open 30s, timeout 500ms";
        guards_on(b).variable("breaker_order_stock", breaker)
    });
    assert_eq!(
        shop.put_product("SLOW-1", &product("SLOW-1", 100)).status,
        200
    );
    // The stock store stalls (every script that may write waits); the order component's own
    // Redis answers as usual.
    stock_redis
        .cli(&["CLIENT", "PAUSE", "20000", "WRITE"])
        .expect("pause");

    for i in 0..2 {
        let resp = shop.order_as(&format!("slow-{i}"), "k", &order_body("SLOW-1"));
        assert_problem(&resp, 503, None);
        assert!(
            !resp.text().contains("order.stock"),
            "refused by the breaker too early"
        );
    }
    assert!(
        shop.app.stderr().contains("timed out"),
        "{}",
        shop.app.stderr()
    );
    let breaker = stock_breaker(&shop);
    assert_eq!(breaker["state"], "open", "{breaker}");
    // Now refused at once by the breaker, while the stock store is still stalled.
    let refused = shop.order_as("slow-2", "k", &order_body("SLOW-1"));
    assert_eq!(
        assert_problem(&refused, 503, None)["breaker"],
        "order.stock"
    );
    stock_redis.cli(&["CLIENT", "UNPAUSE"]).expect("unpause");
}

#[test]
fn the_stock_reservations_route_wide_limit_is_a_429_to_the_client_not_a_stock_failure() {
    let shop = Shop::boot_with(|b| {
        guards_on(b)
            .variable("rate_limit_stock_reserve", "1/m burst 2")
            // One failure would open it: the limit's refusals must not count as failures.
            .variable(
                "breaker_order_stock",
                "errors 50% over 10s, min 1, open 60s",
            )
    });
    assert_eq!(
        shop.put_product("RSV-1", &product("RSV-1", 100)).status,
        200
    );
    let placed = order_of(&shop, "rsv-a", "k", "RSV-1", 1);
    assert_eq!(placed.status, 201, "{}", placed.text());
    // The route-wide limit holds for every caller: the internal route itself...
    let direct = shop.reserve(
        &json!({"reservation_id": "rsv-direct", "items": [{"sku": "RSV-1", "quantity": 1}]}),
    );
    assert_eq!(direct.status, 201, "{}", direct.text());
    assert_eq!(int_header(&direct, "ratelimit-remaining"), 0);
    // ...and the next order's reservation is refused: the client gets 429 with Retry-After.
    let limited = order_of(&shop, "rsv-b", "k", "RSV-1", 1);
    assert_problem(&limited, 429, None);
    assert!(int_header(&limited, "retry-after") >= 1);
    assert_eq!(stock_breaker(&shop)["state"], "closed");
    assert_eq!(shop.levels("RSV-1").0, 98);
}

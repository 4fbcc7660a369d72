//! End to end: flash sales in the real manifests (spin-host), against a private redis-server.
//!
//! Most tests share one app (booted lazily, stopped when the last running test drops it) and
//! keep apart by their own sale ids, SKUs and customers; a test that breaks Redis on purpose
//! (a stream of the wrong type, a crash) or needs the receivers away boots its own.
//!
//! Tests assert behaviour, never timing: concurrency is forced with many threads released at
//! once, expiry by moving a stored expiry into the past, the receivers are waited for with
//! deadlines on their effects.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Barrier, Mutex, Weak};
use std::time::Duration;

use e2e::{assert_problem, internal_auth, purchase_on, sale_body, stripe_event, Shop};
use serde_json::{json, Value};
use shop_domain::flash::FlashOrderRequested;
use testkit::{Response, SpinApp};

const WAIT: Duration = Duration::from_secs(90);

static ENV: Mutex<Weak<Shop>> = Mutex::new(Weak::new());

/// The shared app; booted on first use and again if every earlier user already finished.
fn env() -> Arc<Shop> {
    let mut slot = ENV.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(env) = slot.upgrade() {
        return env;
    }
    let env = Arc::new(Shop::boot());
    *slot = Arc::downgrade(&env);
    env
}

/// One buyer's final answer: the customer, the status and body of the last response.
struct Bought {
    customer: String,
    status: u16,
    body: Value,
}

/// Each customer buys once from `sale` (key `k-<customer>`), `workers` threads at a time,
/// retrying with the same key while the answer is a transport error or a 503 (Redis away).
fn crowd(app: &SpinApp, sale: &str, customers: &[String], workers: usize) -> Vec<Bought> {
    let next = AtomicI64::new(0);
    let out = Mutex::new(Vec::with_capacity(customers.len()));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst) as usize;
                let Some(customer) = customers.get(i) else {
                    return;
                };
                let resp = buy_until_answered(app, sale, customer);
                out.lock().unwrap().push(Bought {
                    customer: customer.clone(),
                    status: resp.status,
                    body: resp.json(),
                });
            });
        }
    });
    out.into_inner().unwrap()
}

/// A purchase retried with the same key until it is answered (not 503, not a dropped
/// connection), up to two minutes.
fn buy_until_answered(app: &SpinApp, sale: &str, customer: &str) -> Response {
    let key = format!("k-{customer}");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        match purchase_on(app, customer, sale, &key) {
            Ok(r) if r.status != 503 => return r,
            other => assert!(
                std::time::Instant::now() < deadline,
                "{customer} never got an answer: {:?}",
                other.map(|r| r.text())
            ),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Watches the sale's `remaining` and the product's `available` in Redis while `f` runs;
/// returns what `f` returned and the lowest value either counter had.
fn watching<T>(shop: &Shop, sale: &str, sku: &str, f: impl FnOnce() -> T) -> (T, i64) {
    let done = AtomicBool::new(false);
    let lowest = AtomicI64::new(i64::MAX);
    let result = std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                for (key, field) in [
                    (format!("stock:flash:sale:{sale}"), "remaining"),
                    (format!("stock:product:{sku}"), "available"),
                ] {
                    if let Ok(v) = shop.redis.cli(&["HGET", &key, field]) {
                        if let Ok(n) = v.parse::<i64>() {
                            lowest.fetch_min(n, Ordering::SeqCst);
                        }
                    }
                }
            }
        });
        let result = f();
        done.store(true, Ordering::SeqCst);
        result
    });
    (result, lowest.load(Ordering::SeqCst))
}

/// `buyer`'s purchase of `sale` under `key`, which must be accepted (202): its ticket id.
fn bought(shop: &Shop, buyer: &str, sale: &str, key: &str) -> String {
    let resp = shop.purchase(buyer, sale, key).expect("purchase");
    assert_eq!(resp.status, 202, "{}", resp.text());
    resp.json()["ticket_id"]
        .as_str()
        .expect("a ticket id")
        .to_owned()
}

/// The envelope of `ticket`'s order request in the `events:flash` stream.
fn requested(shop: &Shop, ticket: &str) -> Value {
    let entries = shop
        .redis
        .cli(&["XRANGE", "events:flash", "-", "+"])
        .expect("XRANGE");
    entries
        .lines()
        .filter(|l| l.starts_with('{') && l.contains(ticket))
        .map(|l| serde_json::from_str(l).expect("an envelope is JSON"))
        .next()
        .unwrap_or_else(|| panic!("no request for {ticket} in {entries}"))
}

fn customers(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// The tickets answered, by customer: 202 (a unit taken now), or 200 (a retry whose first
/// answer was lost, e.g. in a Redis crash, gets the ticket it had taken).
fn tickets(bought: &[Bought]) -> HashMap<String, String> {
    bought
        .iter()
        .filter(|b| b.status == 202 || b.status == 200)
        .map(|b| {
            if b.status == 202 {
                assert_eq!(b.body["status"], "PENDING", "{}", b.body);
            }
            let t = b.body["ticket_id"].as_str().expect("ticket_id").to_owned();
            (b.customer.clone(), t)
        })
        .collect()
}

/// Waits for every ticket to leave PENDING; returns the resolved tickets by customer.
fn resolved(
    shop: &Shop,
    sale: &str,
    tickets: &HashMap<String, String>,
    ring: bool,
) -> HashMap<String, Value> {
    tickets
        .iter()
        .map(|(c, t)| (c.clone(), shop.wait_ticket(c, sale, t, WAIT, ring)))
        .collect()
}

fn sale_counter(shop: &Shop, sale: &str, field: &str) -> i64 {
    shop.get_sale(sale)[field]
        .as_i64()
        .unwrap_or_else(|| panic!("no {field}"))
}

#[test]
fn five_thousand_buyers_for_a_hundred_units_get_exactly_a_hundred_orders() {
    let shop = env();
    shop.open_sale("crowd", "FLASH-CROWD", 500, 100, 1);
    let buyers = customers("crowd", 5000);
    let started = std::time::Instant::now();
    let (bought, lowest) = watching(&shop, "crowd", "FLASH-CROWD", || {
        crowd(&shop.app, "crowd", &buyers, 64)
    });
    // A figure for the reader, not an assertion (tests never assert wall-clock time).
    let took = started.elapsed();
    eprintln!(
        "5000 purchases (64 workers) answered in {took:?}: {:.0}/s",
        5000.0 / took.as_secs_f64()
    );
    assert_eq!(bought.len(), 5000);
    let won = tickets(&bought);
    assert_eq!(won.len(), 100, "exactly the quantity is sold");
    for b in bought.iter().filter(|b| b.status != 202) {
        assert_eq!(b.status, 409, "{}", b.body);
        assert_eq!(b.body["reason"], "sold-out", "{}", b.body);
    }
    assert!(lowest >= 0, "a counter went negative: {lowest}");
    let distinct: HashSet<&String> = won.values().collect();
    assert_eq!(distinct.len(), 100, "one ticket per buyer");

    // Every ticket becomes its buyer's order, at the flash price, awaiting payment.
    for (customer, ticket) in resolved(&shop, "crowd", &won, false) {
        assert_eq!(ticket["status"], "ORDERED", "{ticket}");
        let order = shop.get_order(ticket["order_id"].as_str().unwrap()).json();
        assert_eq!(order["user_id"], customer.as_str(), "{order}");
        assert_eq!(order["status"], "PENDING_PAYMENT", "{order}");
        assert_eq!(
            (order["total"].as_i64(), &order["currency"]),
            (Some(999), &json!("EUR"))
        );
    }
    let orders = shop.sql(
        "SELECT COUNT(*) AS n, COUNT(DISTINCT o.user_id) AS buyers FROM flash_orders f \
         JOIN orders o ON o.order_id = f.order_id WHERE f.sale_id = 'crowd'",
    );
    assert_eq!(orders, vec![json!({"n": 100, "buyers": 100})]);
    let sale = shop.get_sale("crowd");
    assert_eq!(
        (
            &sale["remaining"],
            &sale["taken"],
            &sale["sold"],
            &sale["pending"]
        ),
        (&json!(0), &json!(100), &json!(0), &json!(0)),
        "{sale}"
    );
    assert_eq!(shop.levels("FLASH-CROWD"), (400, 100, 0));
}

#[test]
fn a_hundred_buyers_released_at_once_on_ten_units_never_drive_remaining_below_zero() {
    let shop = env();
    shop.open_sale("ten", "FLASH-TEN", 10, 10, 1);
    let buyers = customers("ten", 100);
    let gate = Barrier::new(buyers.len());
    let (answers, lowest) = watching(&shop, "ten", "FLASH-TEN", || {
        std::thread::scope(|s| {
            let handles: Vec<_> = buyers
                .iter()
                .map(|c| {
                    let (shop, gate) = (&shop, &gate);
                    s.spawn(move || {
                        gate.wait();
                        buy_until_answered(&shop.app, "ten", c).status
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .collect::<Vec<u16>>()
        })
    });
    assert_eq!(answers.iter().filter(|s| **s == 202).count(), 10);
    assert_eq!(answers.iter().filter(|s| **s == 409).count(), 90);
    assert!(lowest >= 0, "remaining or available went to {lowest}");
    let remaining = shop
        .redis
        .cli(&["HGET", "stock:flash:sale:ten", "remaining"])
        .unwrap();
    assert_eq!(remaining, "0");
    assert_eq!(shop.levels("FLASH-TEN"), (0, 10, 0));
}

#[test]
fn exactly_the_quantity_sells_never_one_unit_more() {
    let shop = env();
    shop.open_sale("three", "FLASH-THREE", 3, 3, 1);
    let statuses: Vec<u16> = customers("three", 4)
        .iter()
        .map(|c| buy_until_answered(&shop.app, "three", c).status)
        .collect();
    assert_eq!(statuses, vec![202, 202, 202, 409]);
    let sale = shop.get_sale("three");
    assert_eq!((&sale["remaining"], &sale["taken"]), (&json!(0), &json!(3)));
    assert_eq!(shop.levels("FLASH-THREE"), (0, 3, 0));
}

#[test]
fn a_repeat_buyer_refused_after_taking_the_unit_gets_the_ticket_back() {
    let shop = env();
    shop.open_sale("repeat", "FLASH-REPEAT", 5, 1, 1);
    let ticket = bought(&shop, "rep-a", "repeat", "key-1");

    // Sold out and at the limit: the same key still answers its ticket, and takes nothing.
    let again = shop.purchase("rep-a", "repeat", "key-1").unwrap();
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.json()["ticket_id"], ticket.as_str());
    let other_key = shop.purchase("rep-a", "repeat", "key-2").unwrap();
    assert_eq!(
        assert_problem(&other_key, 409, None)["reason"],
        "limit-reached"
    );
    let other_buyer = shop.purchase("rep-b", "repeat", "key-1").unwrap();
    assert_eq!(
        assert_problem(&other_buyer, 409, None)["reason"],
        "sold-out"
    );
    assert_eq!(sale_counter(&shop, "repeat", "taken"), 1);

    // Once ordered, the retry tells where it went.
    let done = shop.wait_ticket("rep-a", "repeat", &ticket, WAIT, false);
    let replay = shop.purchase("rep-a", "repeat", "key-1").unwrap().json();
    assert_eq!(replay["status"], "ORDERED", "{replay}");
    assert_eq!(replay["order_id"], done["order_id"]);
    assert_eq!(sale_counter(&shop, "repeat", "taken"), 1);
}

#[test]
fn a_signed_in_buyer_sees_what_they_hold_and_may_still_buy_and_a_bad_token_is_refused() {
    let shop = env();
    shop.open_sale("page", "FLASH-PAGE", 10, 3, 2);
    let path = "/api/flash-sales/page";
    // Each step: an optional purchase (buyer, key), then what one buyer's page says
    // (buyer, bought, may_buy).
    let steps = [
        (None, ("page-a", 0, 2)),
        (Some(("page-a", "k1")), ("page-a", 1, 1)),
        // Two of three units gone: another buyer may still buy only what remains.
        (Some(("page-b", "k1")), ("page-c", 0, 1)),
        (Some(("page-a", "k2")), ("page-a", 2, 0)),
    ];
    for (bought, (user, held, may_buy)) in steps {
        if let Some((buyer, key)) = bought {
            assert_eq!(shop.purchase(buyer, "page", key).unwrap().status, 202);
        }
        let resp = shop.get_as(user, path);
        assert_eq!(resp.status, 200, "{}", resp.text());
        assert_eq!(
            resp.json()["you"],
            json!({"customer": user, "bought": held, "may_buy": may_buy})
        );
    }

    // Anonymous callers and the admin see the sale without `you`; a token that does not
    // verify is refused, not taken for no token.
    assert!(shop.get_sale("page").get("you").is_none());
    let (k, v) = e2e::admin_auth();
    let admin = shop.app.send("GET", path, &[(k, &v)], None).unwrap();
    assert_eq!(admin.status, 200, "{}", admin.text());
    assert!(admin.json().get("you").is_none());
    let forged = format!("Bearer {}x", e2e::customer_token("page-a"));
    let refused = shop
        .app
        .send("GET", path, &[("authorization", &forged)], None)
        .unwrap();
    assert_problem(&refused, 401, None);
}

#[test]
fn the_order_request_the_script_writes_is_the_domain_type_with_an_exact_price() {
    let shop = env();
    let max = 9_007_199_254_740_991_i64; // 2^53 - 1: past cjson's 14 digits
    let product = json!({"name": "big", "price": 5000, "currency": "EUR", "stock": 2});
    assert_eq!(shop.put_product("FLASH-BIG", &product).status, 200);
    let resp = shop.put_sale("big", &sale_body("FLASH-BIG", max, 1, 1, -60, 3600));
    assert_eq!(resp.status, 201, "{}", resp.text());
    let ticket = bought(&shop, "big-buyer", "big", "k");

    let envelope = requested(&shop, &ticket);
    assert_eq!(envelope["type"], FlashOrderRequested::KIND);
    assert_eq!(envelope["topic"], shop_domain::flash::TOPIC);
    let request: FlashOrderRequested =
        serde_json::from_value(envelope["payload"].clone()).expect("the domain type");
    assert_eq!(request.ticket_id, ticket);
    assert_eq!(request.customer, "big-buyer");
    assert_eq!((request.unit_price, request.quantity), (max, 1));
    assert_eq!(
        (request.sku.as_str(), request.currency.as_str()),
        ("FLASH-BIG", "EUR")
    );

    let done = shop.wait_ticket("big-buyer", "big", &ticket, WAIT, false);
    let order = shop.get_order(done["order_id"].as_str().unwrap()).json();
    assert_eq!(order["total"].as_i64(), Some(max), "{order}");
}

#[test]
fn cancelled_and_expired_flash_orders_give_the_unit_back_and_a_paid_one_is_sold() {
    let shop = env();
    shop.open_sale("life", "FLASH-LIFE", 10, 4, 1);
    let mut orders = HashMap::new();
    for c in ["life-cancel", "life-pay", "life-expire", "life-deadline"] {
        let t = buy_until_answered(&shop.app, "life", c).json()["ticket_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let done = shop.wait_ticket(c, "life", &t, WAIT, false);
        orders.insert(c, done["order_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(sale_counter(&shop, "life", "remaining"), 0);

    let cancelled = shop.cancel("life-cancel", &orders["life-cancel"]);
    assert_eq!(cancelled.status, 200, "{}", cancelled.text());
    wait_sale(&shop, "life", |s| s["remaining"] == 1);

    let paid = &orders["life-pay"];
    let resp = shop.webhook(&stripe_event(
        "evt_life",
        "payment_intent.succeeded",
        paid,
        999,
        "eur",
    ));
    assert_eq!(resp.status, 200, "{}", resp.text());
    shop.wait_order(paid, WAIT, |o| o["status"] == "PAID");
    wait_sale(&shop, "life", |s| s["sold"] == 1);

    // The last one's reservation expires (its expiry moved into the past): the TTL sweep gives
    // the unit back to the sale, not to the product's available stock.
    let order = shop.get_order(&orders["life-expire"]).json();
    let rid = shop.reservation_of(&order);
    let key = format!("stock:reservation:{rid}");
    shop.redis.cli(&["HSET", &key, "expires_at", "1"]).unwrap();
    shop.redis
        .cli(&["ZADD", "stock:reservations:expiries", "1", &rid])
        .unwrap();
    let swept = shop.expire_reservations(None, true);
    assert_eq!(swept.status, 200, "{}", swept.text());
    let sale = wait_sale(&shop, "life", |s| s["remaining"] == 2);
    assert_eq!(
        (&sale["sold"], &sale["taken"]),
        (&json!(1), &json!(2)),
        "{sale}"
    );
    assert_eq!(shop.levels("FLASH-LIFE"), (6, 3, 1));

    // An order past its payment deadline expires in the order context (its sweep, rung by a
    // compensator run); its OrderExpired gives the unit back to the sale.
    let late = &orders["life-deadline"];
    shop.sql_for(
        "life-deadline",
        &format!("UPDATE orders SET expires_ms = 0 WHERE order_id = '{late}'"),
    );
    shop.compensator_run();
    shop.wait_order(late, WAIT, |o| o["status"] == "EXPIRED");
    let sale = wait_sale(&shop, "life", |s| s["remaining"] == 3);
    assert_eq!(
        (&sale["sold"], &sale["taken"]),
        (&json!(1), &json!(1)),
        "{sale}"
    );
    assert_eq!(shop.levels("FLASH-LIFE"), (6, 3, 1));

    // A unit given back sells again.
    let again = buy_until_answered(&shop.app, "life", "life-late");
    assert_eq!(again.status, 202, "{}", again.text());
}

fn wait_sale(shop: &Shop, sale: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let s = shop.get_sale(sale);
        if cond(&s) {
            return s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "sale {sale} stayed {s}\n{}",
            shop.app.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sales_are_validated_field_by_field_and_only_the_admin_may_put_one() {
    let shop = env();
    let product = json!({"name": "v", "price": 5000, "currency": "EUR", "stock": 5});
    assert_eq!(shop.put_product("FLASH-VALID", &product).status, 200);
    let good = sale_body("FLASH-VALID", 999, 2, 1, 600, 3600);
    let anonymous = shop
        .app
        .send_json("PUT", "/api/flash-sales/v1", &[], &good)
        .unwrap();
    assert_problem(&anonymous, 401, None);
    let with = |k: &str, v: Value| {
        let mut b = good.clone();
        b[k] = v;
        b
    };
    let cases = [
        (with("sku", json!("NO-SUCH")), 404, "sku"),
        (with("currency", json!("USD")), 422, "currency"),
        (with("price", json!(-1)), 422, "price"),
        (with("quantity", json!(0)), 422, "quantity"),
        (with("quantity", json!(6)), 409, "quantity"),
        (with("per_user_limit", json!("one")), 422, "per_user_limit"),
        (with("starts_at", json!("tomorrow")), 422, "starts_at"),
        (with("ends_at", good["starts_at"].clone()), 422, "ends_at"),
    ];
    for (body, status, field) in cases {
        assert_problem(&shop.put_sale("v1", &body), status, Some(field));
    }
    assert_eq!(
        shop.levels("FLASH-VALID"),
        (5, 0, 0),
        "no refused PUT held a unit"
    );

    // Before its start a sale may change; its held units follow its quantity.
    assert_eq!(shop.put_sale("v1", &good).status, 201);
    assert_eq!(shop.levels("FLASH-VALID"), (3, 2, 0));
    assert_eq!(shop.put_sale("v1", &with("quantity", json!(4))).status, 200);
    assert_eq!(shop.levels("FLASH-VALID"), (1, 4, 0));
    let early = shop.purchase("v-buyer", "v1", "k").unwrap();
    assert_eq!(assert_problem(&early, 422, None)["reason"], "not-started");

    // Once started it cannot change.
    let started = sale_body("FLASH-VALID", 999, 4, 1, -60, 3600);
    assert_eq!(shop.put_sale("v1", &started).status, 200);
    let late = shop.put_sale("v1", &with("price", json!(1)));
    assert_eq!(
        assert_problem(&late, 409, None)["type"],
        "https://errors.spin-shop.dev/sale-started"
    );

    // Purchases need a customer and a key; tickets are their buyer's only.
    let no_token = shop
        .app
        .send(
            "POST",
            "/api/flash-sales/v1/purchase",
            &[("idempotency-key", "k")],
            None,
        )
        .unwrap();
    assert_problem(&no_token, 401, None);
    let (k, v) = e2e::customer_auth("v-buyer");
    let no_key = shop
        .app
        .send("POST", "/api/flash-sales/v1/purchase", &[(k, &v)], None)
        .unwrap();
    assert_problem(&no_key, 400, Some("Idempotency-Key"));
    assert_problem(
        &shop.purchase("v-buyer", "no-such-sale", "k").unwrap(),
        404,
        None,
    );
    let ticket = bought(&shop, "v-buyer", "v1", "k");
    assert_eq!(shop.ticket("v-buyer", "v1", &ticket).status, 200);
    assert_problem(&shop.ticket("v-other", "v1", &ticket), 404, None);
    assert_problem(&shop.ticket("v-buyer", "other-sale", &ticket), 404, None);
}

#[test]
fn a_failing_xadd_takes_no_unit_so_no_unit_is_ever_taken_without_its_order_request() {
    let shop = Shop::boot_without_cron();
    shop.open_sale("xadd", "FLASH-XADD", 5, 5, 1);
    // The stream the order request goes to holds a string: XADD fails inside the script.
    shop.redis
        .cli(&["SET", "events:flash", "not-a-stream"])
        .unwrap();
    let refused = shop.purchase("x-buyer", "xadd", "k").unwrap();
    assert_problem(&refused, 503, None);
    let sale = shop.get_sale("xadd");
    assert_eq!(
        (&sale["remaining"], &sale["taken"], &sale["pending"]),
        (&json!(5), &json!(0), &json!(0))
    );
    for (cmd, key) in [
        ("HLEN", "stock:flash:sale:xadd:buyers"),
        ("HLEN", "stock:flash:sale:xadd:keys"),
    ] {
        assert_eq!(shop.redis.cli(&[cmd, key]).unwrap(), "0", "{key}");
    }
    for pattern in ["stock:flash:ticket:*", "stock:reservation:flash_*"] {
        assert_eq!(shop.redis.cli(&["KEYS", pattern]).unwrap(), "", "{pattern}");
    }
    assert_eq!(shop.levels("FLASH-XADD"), (0, 5, 0));

    // The stream back, the same key buys, and its order is created.
    shop.redis.cli(&["DEL", "events:flash"]).unwrap();
    let ticket = bought(&shop, "x-buyer", "xadd", "k");
    let done = shop.wait_ticket("x-buyer", "xadd", &ticket, WAIT, true);
    assert_eq!(done["status"], "ORDERED", "{done}");
}

#[test]
fn redis_crashing_mid_sale_oversells_nothing_and_every_ticket_resolves() {
    let mut shop = Shop::boot_on_durable_redis();
    let fsync = shop.redis.cli(&["CONFIG", "GET", "appendfsync"]).unwrap();
    assert_eq!(fsync.lines().last(), Some("always"), "{fsync}");
    shop.open_sale("crash", "FLASH-CRASH", 300, 100, 1);
    let buyers = customers("crash", 1500);
    // A first crowd takes some units; the second buys the rest while Redis crashes.
    let (first, second) = buyers.split_at(40);
    let mut bought = crowd(&shop.app, "crash", first, 32);
    // Crash (SIGKILL) and restart while a second crowd buys: their retries (same keys) ride
    // through the outage.
    let (app, redis) = (&shop.app, &mut shop.redis);
    let bought_late = std::thread::scope(|s| {
        let late = s.spawn(|| crowd(app, "crash", second, 32));
        // Crash once the second crowd has taken about half of what was left.
        let remaining = || {
            redis
                .cli(&["HGET", "stock:flash:sale:crash", "remaining"])
                .unwrap()
        };
        let mut left = remaining();
        while left.parse::<i64>().unwrap() > 30 {
            left = remaining();
        }
        redis.crash().expect("crash redis");
        std::thread::sleep(Duration::from_millis(500));
        redis.restart().expect("restart redis");
        (late.join().unwrap(), left)
    });
    let (bought_late, left) = bought_late;
    let left: i64 = left.parse().expect("remaining before the crash");
    assert!(left > 0, "the crash came mid-sale: {left} units were left");
    bought.extend(bought_late);
    assert_eq!(bought.len(), buyers.len());
    let won = tickets(&bought);
    assert!(won.len() <= 100, "{} tickets for 100 units", won.len());
    for b in bought.iter().filter(|b| b.status != 202 && b.status != 200) {
        assert_eq!(b.status, 409, "{}", b.body);
    }
    // Every unit taken has a ticket a buyer was told about (a reply lost in the crash was
    // answered to the retry), and every ticket resolves.
    let sale = shop.get_sale("crash");
    assert_eq!(sale["taken"].as_u64(), Some(won.len() as u64), "{sale}");
    assert!(sale["remaining"].as_i64() >= Some(0), "{sale}");
    let done = resolved(&shop, "crash", &won, true);
    assert!(done
        .values()
        .all(|t| t["status"] == "ORDERED" || t["status"] == "FAILED"));
    let ordered = done.values().filter(|t| t["status"] == "ORDERED").count();
    let orders = shop.sql("SELECT COUNT(*) AS n FROM flash_orders WHERE sale_id = 'crash'");
    assert_eq!(orders, vec![json!({"n": ordered})]);
    let (available, reserved, sold) = shop.levels("FLASH-CRASH");
    assert_eq!(
        (available, reserved + sold),
        (200, 100),
        "the product's units are all accounted for"
    );
}

#[test]
fn the_drain_route_creates_flash_orders_where_no_redis_trigger_runs() {
    let shop = Shop::boot_without_receivers();
    shop.open_sale("drain", "FLASH-DRAIN", 5, 5, 1);
    let ticket = bought(&shop, "d-buyer", "drain", "k");
    assert_eq!(
        shop.ticket("d-buyer", "drain", &ticket).json()["status"],
        "PENDING"
    );
    let (k, v) = internal_auth();
    for path in ["/api/orders/events/drain", "/api/stock/events/drain"] {
        let resp = shop.app.send("POST", path, &[(k, &v)], None).unwrap();
        assert_eq!(resp.status, 200, "{path}: {}", resp.text());
    }
    let done = shop.ticket("d-buyer", "drain", &ticket).json();
    assert_eq!(done["status"], "ORDERED", "{done}");
}

#[test]
fn a_ticket_whose_order_request_was_lost_gets_its_order_from_the_reconciliation_once() {
    let mut shop = Shop::boot_without_receivers();
    shop.restart_without_receivers_with(|b| b.variable("flash_pending_timeout_seconds", "0"));
    shop.open_sale("lost", "FLASH-LOST", 5, 5, 1);
    let ticket = bought(&shop, "l-buyer", "lost", "k");
    // The request is lost on its way: the stream goes before any receiver read it.
    shop.redis.cli(&["DEL", "events:flash"]).unwrap();
    let report = flash_report(&shop, "lost");
    assert_eq!(
        (
            &report["taken"],
            &report["pending"],
            &report["live_orders"],
            &report["drift"]
        ),
        (&json!(1), &json!(1), &json!(0), &json!(0)),
        "{report}"
    );

    // Two overlapping runs: each may send it again, the order context makes one order of it.
    let runs: Vec<Value> = std::thread::scope(|s| {
        let a = s.spawn(|| shop.compensator_run());
        let b = s.spawn(|| shop.compensator_run());
        vec![a.join().unwrap(), b.join().unwrap()]
    });
    let reappended: u64 = runs
        .iter()
        .flat_map(|r| r["flash"].as_array().unwrap().clone())
        .filter(|s| s["sale_id"] == "lost")
        .map(|s| s["reappended"].as_u64().unwrap())
        .sum();
    assert!(reappended >= 1, "{runs:?}");
    let (k, v) = internal_auth();
    for path in ["/api/orders/events/drain", "/api/stock/events/drain"] {
        let resp = shop.app.send("POST", path, &[(k, &v)], None).unwrap();
        assert_eq!(resp.status, 200, "{path}: {}", resp.text());
    }
    let done = shop.ticket("l-buyer", "lost", &ticket).json();
    assert_eq!(done["status"], "ORDERED", "{done}");
    let orders = shop.sql(&format!(
        "SELECT COUNT(*) AS n FROM flash_orders WHERE ticket_id = '{ticket}'"
    ));
    assert_eq!(orders, vec![json!({"n": 1})]);
    let report = flash_report(&shop, "lost");
    assert_eq!(
        (
            &report["taken"],
            &report["pending"],
            &report["live_orders"],
            &report["drift"]
        ),
        (&json!(1), &json!(0), &json!(1), &json!(0)),
        "{report}"
    );
}

/// The sale's line of `GET /api/ops/flash-sales`.
fn flash_report(shop: &Shop, sale: &str) -> Value {
    let (k, v) = e2e::admin_auth();
    let resp = shop
        .app
        .send("GET", "/api/ops/flash-sales", &[(k, &v)], None)
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    let body = resp.json();
    body["sales"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["sale_id"] == sale).cloned())
        .unwrap_or_else(|| panic!("no {sale} in {body}"))
}

#[test]
fn an_ended_sale_gives_what_it_still_holds_back_to_the_product_and_so_do_its_orders() {
    let shop = env();
    shop.open_sale("ends", "FLASH-ENDS", 10, 4, 1);
    let t = buy_until_answered(&shop.app, "ends", "e-buyer").json()["ticket_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let order_id = shop.wait_ticket("e-buyer", "ends", &t, WAIT, false)["order_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(shop.levels("FLASH-ENDS"), (6, 4, 0));

    // The window ends (its end moved into the past): the next sweep closes the sale, and the
    // three units nobody bought go back to the product.
    shop.redis
        .cli(&["HSET", "stock:flash:sale:ends", "ends_at", "1"])
        .unwrap();
    shop.redis
        .cli(&["ZADD", "stock:flash:ends", "1", "ends"])
        .unwrap();
    let swept = shop.expire_reservations(None, true).json();
    assert!(swept["sales_closed"].as_u64() >= Some(1), "{swept}");
    assert_eq!(shop.levels("FLASH-ENDS"), (9, 1, 0));
    let sale = shop.get_sale("ends");
    assert_eq!(
        (&sale["remaining"], &sale["taken"]),
        (&json!(0), &json!(4)),
        "{sale}"
    );
    let late = shop.purchase("e-late", "ends", "k").unwrap();
    assert_eq!(assert_problem(&late, 422, None)["reason"], "ended");
    // Sweeping again closes nothing twice.
    shop.expire_reservations(None, true);
    assert_eq!(shop.levels("FLASH-ENDS"), (9, 1, 0));

    // Its order cancelled after the end: the unit goes to the product, not to a closed sale.
    let cancelled = shop.cancel("e-buyer", &order_id);
    assert_eq!(cancelled.status, 200, "{}", cancelled.text());
    assert_eq!(
        shop.wait_levels("FLASH-ENDS", WAIT, |l| l.1 == 0),
        (10, 0, 0)
    );
    assert_eq!(shop.get_sale("ends")["remaining"], 0);
}

#[test]
fn a_request_the_order_context_refuses_fails_its_ticket_and_gives_the_unit_and_the_limit_back() {
    let shop = Shop::boot_without_receivers();
    shop.open_sale("refuse", "FLASH-REFUSE", 5, 1, 1);
    let ticket = bought(&shop, "r-buyer", "refuse", "k1");
    // The request reaches the order context after its reservation expired (the entry is
    // rewritten with an expiry in the past before any receiver read it).
    let mut envelope = requested(&shop, &ticket);
    envelope["payload"]["expires_at_ms"] = json!(1);
    shop.redis.cli(&["DEL", "events:flash"]).unwrap();
    let m = envelope.to_string();
    shop.redis
        .cli(&["XADD", "events:flash", "*", "m", &m])
        .unwrap();

    let (k, v) = internal_auth();
    for path in ["/api/orders/events/drain", "/api/stock/events/drain"] {
        let resp = shop.app.send("POST", path, &[(k, &v)], None).unwrap();
        assert_eq!(resp.status, 200, "{path}: {}", resp.text());
    }
    let failed = shop.ticket("r-buyer", "refuse", &ticket).json();
    assert_eq!(
        (&failed["status"], &failed["reason"]),
        (&json!("FAILED"), &json!("reservation-expired")),
        "{failed}"
    );
    assert!(failed.get("order_id").is_none(), "{failed}");
    assert_eq!(
        shop.sql("SELECT COUNT(*) AS n FROM flash_orders"),
        vec![json!({"n": 0})]
    );
    let sale = shop.get_sale("refuse");
    assert_eq!(
        (&sale["remaining"], &sale["pending"]),
        (&json!(1), &json!(0)),
        "{sale}"
    );
    // The same key tells what became of it; the buyer may buy again with another.
    let replay = shop.purchase("r-buyer", "refuse", "k1").unwrap();
    assert_eq!(
        (replay.status, replay.json()["status"].clone()),
        (200, json!("FAILED"))
    );
    let again = shop.purchase("r-buyer", "refuse", "k2").unwrap();
    assert_eq!(again.status, 202, "{}", again.text());
}

#[test]
fn the_script_takes_nothing_when_its_order_request_is_not_appended() {
    let shop = env();
    shop.open_sale("dedupe", "FLASH-DEDUPE", 5, 5, 1);
    // A message id publish.lua remembers as sent is skipped, not appended: run the real script
    // with such an id, as the component would (its keys and arguments, in its order).
    shop.redis
        .cli(&["SET", "outbox:sent:msg_seen", "1", "EX", "600"])
        .unwrap();
    let envelope =
        json!({"message_id": "msg_seen", "topic": "flash", "type": "FlashOrderRequested",
        "aggregate_id": "tkt_seen", "seq": 1, "payload": {}, "trace_id": null,
        "created_at": "2026-12-07T00:00:00Z"})
        .to_string();
    let run = shop.redis.cli(&[
        "EVAL",
        &e2e::stock_lua("purchase"),
        "9",
        "stock:flash:sale:dedupe",
        "stock:flash:sale:dedupe:keys",
        "stock:flash:sale:dedupe:buyers",
        "stock:flash:ticket:tkt_seen",
        "stock:reservation:flash_seen",
        "stock:reservations:expiries",
        "stock:flash:sale:dedupe:pending",
        "events:flash",
        "doorbell:marks:flash",
        "dedupe",
        "d-buyer",
        "k",
        "tkt_seen",
        "flash_seen",
        "900000",
        "stock:flash:ticket:",
        "600",
        "doorbell:flash",
        "2000",
        "1",
        "msg_seen",
        &envelope,
    ]);
    // redis-cli prints the script's error reply (and exits 0).
    let out = run.unwrap_or_else(|e| e.to_string());
    assert!(out.contains("not appended"), "the script must fail: {out}");
    let sale = shop.get_sale("dedupe");
    assert_eq!(
        (&sale["remaining"], &sale["taken"]),
        (&json!(5), &json!(0)),
        "{sale}"
    );
    assert_eq!(
        shop.redis
            .cli(&["EXISTS", "stock:flash:ticket:tkt_seen"])
            .unwrap(),
        "0"
    );
    assert_eq!(
        shop.redis
            .cli(&["HLEN", "stock:flash:sale:dedupe:buyers"])
            .unwrap(),
        "0"
    );
}

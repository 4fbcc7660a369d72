//! End to end: the real `spin.toml` and the five function components in the host, against a
//! private redis-server and SQLite files in a temporary state dir. Every function's health route
//! must answer 200 with every check "ok" (one real round trip to each store it depends on).

use e2e::Shop;

const FUNCTIONS: [&str; 5] = [
    "order",
    "stock",
    "coupon",
    "payment-callback",
    "compensator",
];

#[test]
fn every_function_is_healthy_in_the_real_manifest() {
    let shop = Shop::boot();
    let app = &shop.app;

    for function in FUNCTIONS {
        let path = format!("/api/health/{function}");
        let resp = app
            .get(&path)
            .unwrap_or_else(|e| panic!("GET {path}: {e:#}\nstderr:\n{}", app.stderr()));
        assert_eq!(
            resp.status,
            200,
            "GET {path}: {} {}\nhost stderr:\n{}",
            resp.status,
            resp.text(),
            app.stderr()
        );
        let body = resp.json();
        assert_eq!(body["status"], "ok", "{path}: {body}");
        assert_eq!(body["component"], function, "{path}: {body}");
        let checks = body["checks"]
            .as_object()
            .unwrap_or_else(|| panic!("{path}: no checks object: {body}"));
        assert!(!checks.is_empty(), "{path}: no checks at all: {body}");
        for (name, value) in checks {
            assert_eq!(value, "ok", "{path}: check {name} failed: {body}");
        }
    }

    // Each receiver's Redis trigger is subscribed to its doorbell.
    for channel in ["doorbell:payments", "doorbell:orders"] {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            let out = shop
                .redis
                .cli(&["PUBSUB", "NUMSUB", channel])
                .expect("PUBSUB NUMSUB");
            let subscribers: usize = out
                .lines()
                .nth(1)
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0);
            if subscribers >= 1 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "nobody subscribed to {channel} (PUBSUB NUMSUB: {out:?})\nhost stderr:\n{}",
                app.stderr()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    // Nothing routed outside the functions' routes.
    let resp = app.get("/api/nothing-here").expect("GET");
    assert_eq!(resp.status, 404, "{}", resp.text());
}

#[test]
fn a_failed_check_answers_a_stable_problem_and_logs_its_cause() {
    let mut shop = Shop::boot();
    let healthy = shop.app.get("/api/health/order").expect("GET");
    assert_eq!(healthy.status, 200, "{}", healthy.text());
    shop.redis.stop_saving().expect("stop redis");

    for function in ["order", "payment-callback"] {
        let path = format!("/api/health/{function}");
        let resp = shop.app.get(&path).expect("GET");
        let body = e2e::assert_problem(&resp, 503, None);
        assert_eq!(
            body["type"], "https://errors.spin-shop.dev/degraded",
            "{body}"
        );
        assert_eq!(body["component"], function, "{body}");
        assert_eq!(body["checks"]["redis"], "failed", "{body}");
        assert_eq!(body["checks"]["sqlite"], "ok", "{body}");
        // The cause (an address, a library's words) stays in the log.
        let port = shop.redis.port().to_string();
        assert!(
            !resp.text().contains(&port),
            "{path} leaks the address: {}",
            resp.text()
        );
        assert_eq!(body["detail"], "health checks failed: redis", "{body}");
    }
    assert!(
        shop.app
            .wait_for_log(std::time::Duration::from_secs(5), |l| {
                l.contains("order: health check redis failed")
            }),
        "the cause is logged:\n{}",
        shop.app.stderr()
    );
}

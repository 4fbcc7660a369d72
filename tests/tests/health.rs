//! End to end: the real `spin.toml` and the five function components in the host, against a
//! private redis-server and SQLite files in a temporary state dir. Every function's health route
//! must answer 200 with every check "ok" (one real round trip to each store it depends on).

use std::time::Duration;

use testkit::{repo_root, RedisServer, SpinApp};

const FUNCTIONS: [&str; 5] = [
    "order",
    "stock",
    "coupon",
    "payment-callback",
    "compensator",
];

#[test]
fn every_function_is_healthy_in_the_real_manifest() {
    for wasm in [
        "order",
        "stock",
        "coupon",
        "payment_callback",
        "compensator",
    ] {
        testkit::wasm(wasm); // a loud failure naming the build command if one is missing
    }
    let redis = RedisServer::start().expect("redis-server");
    let state = tempfile_dir();
    let app = SpinApp::builder(repo_root().join("spin.toml"))
        .state_dir(&state)
        .variable("redis_host", redis.host())
        .variable("admin_token", "e2e-admin-token")
        .variable("payment_webhook_secret", "e2e-webhook-secret")
        .startup_timeout(Duration::from_secs(180))
        .start()
        .unwrap_or_else(|e| panic!("the real spin.toml did not start: {e:#}"));

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

    // Nothing routed outside the functions' routes.
    let resp = app.get("/api/nothing-here").expect("GET");
    assert_eq!(resp.status, 404, "{}", resp.text());
    drop(app);
    let _ = std::fs::remove_dir_all(&state);
}

/// A fresh directory for `--state-dir` (the e2e crate has no tempfile dependency).
fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "spin-shop-e2e-health-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir).expect("create state dir");
    dir
}

//! End to end: the load tool (`shop-load`, crates/loadtool) against the real app. Its report is
//! what people and the benchmark scripts read, so it must agree with what the app stored.

use std::path::Path;

use e2e::{test_keys, Shop, ADMIN_TOKEN, AUTH_AUDIENCE, AUTH_ISSUER};
use serde_json::Value;

/// Runs `shop-load` with the e2e app's credentials (the test key, its kid, issuer, audience and
/// the admin token) and `mode_args`; returns its JSON report and the plot's text.
fn shop_load(shop: &Shop, dir: &Path, mode_args: &[&str]) -> (Value, String) {
    let key = dir.join("es256.pem");
    std::fs::write(&key, test_keys().es256.private_pem()).expect("write the key");
    let plot = dir.join("latency.svg");
    let base = shop.app.url("");
    let mut argv = vec![
        "shop-load",
        "--quiet",
        "--json",
        "--base",
        &base,
        "--admin-token",
        ADMIN_TOKEN,
        "--kid",
        "e2e-es256",
        "--issuer",
        AUTH_ISSUER,
        "--audience",
        AUTH_AUDIENCE,
    ];
    let (key, plot_arg) = (key.display().to_string(), plot.display().to_string());
    argv.extend(["--key", &key, "--plot", &plot_arg]);
    argv.extend(mode_args);
    let args = shop_load::parse_args(argv).expect("valid arguments");
    let report = shop_load::run(&args).expect("shop-load runs to its end");
    let svg = std::fs::read_to_string(&plot).expect("the plot is written");
    (
        serde_json::to_value(&report).expect("the report is JSON"),
        svg,
    )
}

/// 60 orders of one unit for 40 units, 16 at once, from 8 customers: the report's 201 count is
/// the orders in SQLite, the rest were refused for stock, and each customer's token was its own.
#[test]
fn order_mode_report_agrees_with_the_database() {
    let shop = Shop::boot();
    let dir = tempfile::tempdir().expect("temp dir");
    let (report, svg) = shop_load(
        &shop,
        dir.path(),
        &[
            "--concurrency",
            "16",
            "--customer-prefix",
            "loadtool-e2e",
            "orders",
            "--sku",
            "LOAD-E2E",
            "--requests",
            "60",
            "--customers",
            "8",
            "--product-stock",
            "40",
        ],
    );
    assert_eq!(report["requests"], 60, "{report:#}");
    assert_eq!(report["status"]["201"], 40, "{report:#}");
    assert_eq!(report["status"]["409"], 20, "{report:#}");
    assert_eq!(report["orders"]["created"], 40, "{report:#}");
    assert_eq!(shop.count_rows("orders"), 40);
    let customers = shop.sql(
        "SELECT COUNT(DISTINCT user_id) AS n, MIN(user_id) AS first FROM orders \
         WHERE user_id LIKE 'loadtool-e2e-%'",
    );
    assert_eq!(
        customers[0]["n"], 8,
        "every customer ordered under its own token"
    );
    // The product the tool set up and read back: every unit held by the 40 orders.
    assert_eq!(report["product"]["available"], 0, "{report:#}");
    assert_eq!(report["product"]["reserved"], 40, "{report:#}");
    let lat = &report["latency_ms"];
    assert!(lat["p50"].as_f64() <= lat["p99"].as_f64(), "{lat}");
    let timed: u64 = report["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(timed, 60, "every request is on the timeline");
    assert!(svg.starts_with("<svg") && svg.contains("p99"), "{svg:.200}");
}

/// 300 buyers, each trying twice (fresh keys), for 50 units at one per customer: the report's
/// 202s are the units, every ticket resolves to ORDERED, nobody got two, and the sale, the
/// product and the flash orders in SQLite all say 50.
#[test]
fn flash_mode_report_agrees_with_the_sale_and_the_database() {
    let shop = Shop::boot();
    let dir = tempfile::tempdir().expect("temp dir");
    let (report, _) = shop_load(
        &shop,
        dir.path(),
        &[
            "--concurrency",
            "32",
            "--customer-prefix",
            "loadtool-flash",
            "flash",
            "--sale",
            "load-e2e",
            "--create",
            "--sku",
            "LOAD-FLASH",
            "--quantity",
            "50",
            "--per-user-limit",
            "1",
            "--buyers",
            "300",
            "--attempts",
            "2",
            "--product-stock",
            "100",
            "--poll-timeout-secs",
            "120",
        ],
    );
    let flash = &report["flash"];
    assert_eq!(report["requests"], 600, "{report:#}");
    assert_eq!(report["status"]["202"], 50, "{report:#}");
    assert_eq!(report["status"]["409"], 550, "{report:#}");
    assert_eq!(flash["accepted"], 50, "{flash:#}");
    assert_eq!(flash["ordered"], 50, "{flash:#}");
    assert_eq!(flash["pending"], 0, "{flash:#}");
    assert_eq!(flash["buyers_with_units"], 50, "{flash:#}");
    assert_eq!(flash["buyers_with_two_or_more"], 0, "{flash:#}");
    assert_eq!(flash["oversold"], false, "{flash:#}");
    assert_eq!(
        (&flash["quantity"], &flash["remaining"]),
        (&50.into(), &0.into()),
        "{flash:#}"
    );
    assert_eq!(report["product"]["available"], 50, "{report:#}");
    assert_eq!(report["product"]["reserved"], 50, "{report:#}");
    let rows = shop.sql(
        "SELECT COUNT(*) AS n, COUNT(DISTINCT o.user_id) AS buyers FROM flash_orders f \
         JOIN orders o USING (order_id) WHERE f.sale_id = 'load-e2e'",
    );
    assert_eq!(
        (&rows[0]["n"], &rows[0]["buyers"]),
        (&50.into(), &50.into()),
        "{rows:?}"
    );
}

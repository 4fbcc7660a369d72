//! End to end: the load tool (`shop-load`, crates/loadtool) against the real app, under our host
//! and under real Spin. Its report is what people and the benchmark scripts read, so it must
//! agree with what the app stored.

use e2e::{test_keys, Shop, ADMIN_TOKEN, AUTH_AUDIENCE, AUTH_ISSUER};
use serde_json::Value;

/// Runs `shop-load` with the e2e app's credentials (a test key, its kid, issuer, audience and
/// the admin token) and `mode_args` (whitespace-separated); returns its JSON report and the
/// plot's text. The key is the ES256 one, or the RS256 one with `rs256`: the tool tells them
/// apart by the PEM.
fn shop_load(shop: &Shop, rs256: bool, mode_args: &str) -> (Value, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = dir.path().join("key.pem");
    let signer = match rs256 {
        true => &test_keys().rs256,
        false => &test_keys().es256,
    };
    std::fs::write(&key, signer.private_pem()).expect("write the key");
    let plot = dir.path().join("latency.svg");
    let (base, key, plot_arg) = (
        shop.app.url(""),
        key.display().to_string(),
        plot.display().to_string(),
    );
    let mut argv = vec![
        "shop-load",
        "--quiet",
        "--json",
        "--base",
        &base,
        "--admin-token",
        ADMIN_TOKEN,
        "--kid",
        signer.kid(),
        "--issuer",
        AUTH_ISSUER,
        "--audience",
        AUTH_AUDIENCE,
        "--key",
        &key,
        "--plot",
        &plot_arg,
    ];
    argv.extend(mode_args.split_whitespace());
    let args = shop_load::parse_args(argv).expect("valid arguments");
    let report = shop_load::run(&args).expect("shop-load runs to its end");
    let svg = std::fs::read_to_string(&plot).expect("the plot is written");
    let report = serde_json::to_value(&report).expect("the report is JSON");
    (report, svg)
}

/// 60 orders of one unit for 40 units, 16 at once, from 8 customers: the report's 201 count is
/// the orders in SQLite, the rest were refused for stock, and each customer's token was its own.
fn orders_agree(shop: &Shop) {
    let (report, svg) = shop_load(
        shop,
        false,
        "--concurrency 16 --customer-prefix loadtool-e2e orders --sku LOAD-E2E --requests 60 \
         --customers 8 --product-stock 40",
    );
    assert_eq!(report["requests"], 60, "{report:#}");
    assert_eq!(report["status"]["201"], 40, "{report:#}");
    assert_eq!(report["status"]["409"], 20, "{report:#}");
    assert_eq!(report["orders"]["created"], 40, "{report:#}");
    assert_eq!(shop.count_rows("orders"), 40);
    let customers = shop
        .sql("SELECT COUNT(DISTINCT user_id) AS n FROM orders WHERE user_id LIKE 'loadtool-e2e-%'");
    assert_eq!(
        customers[0]["n"], 8,
        "each customer ordered with its own token"
    );
    // The product the tool set up and read back: every unit held by the 40 orders.
    assert_eq!(report["product"]["available"], 0, "{report:#}");
    assert_eq!(report["product"]["reserved"], 40, "{report:#}");
    let lat = &report["latency_ms"];
    assert!(lat["p50"].as_f64() <= lat["p99"].as_f64(), "{lat}");
    let timeline = report["timeline"].as_array().expect("a timeline");
    let timed: u64 = timeline.iter().filter_map(|b| b["requests"].as_u64()).sum();
    assert_eq!(timed, 60, "every request is on the timeline");
    assert!(svg.starts_with("<svg") && svg.contains("p99"), "{svg:.200}");
}

/// 300 buyers with RS256 tokens, signed in first (each opened the sale's page with their
/// token), each trying twice (fresh keys), for 50 units at one per customer: the report's 202s
/// are the units, every ticket resolves to ORDERED, nobody got two, and the sale, the product
/// and the flash orders in SQLite all say 50.
fn flash_agrees(shop: &Shop) {
    let (report, _) = shop_load(
        shop,
        true,
        "--concurrency 32 --customer-prefix loadtool-flash flash --sale load-e2e --create \
         --sku LOAD-FLASH --quantity 50 --per-user-limit 1 --buyers 300 --attempts 2 \
         --signed-in --product-stock 100 --poll-timeout-secs 120",
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
    assert_eq!(flash["quantity"], 50, "{flash:#}");
    assert_eq!(flash["remaining"], 0, "{flash:#}");
    assert_eq!(report["product"]["available"], 50, "{report:#}");
    assert_eq!(report["product"]["reserved"], 50, "{report:#}");
    let rows = shop.sql(
        "SELECT COUNT(*) AS n, COUNT(DISTINCT o.user_id) AS buyers FROM flash_orders f \
         JOIN orders o USING (order_id) WHERE f.sale_id = 'load-e2e'",
    );
    assert_eq!(rows[0]["n"], 50, "{rows:?}");
    assert_eq!(rows[0]["buyers"], 50, "{rows:?}");
}

#[test]
fn order_mode_report_agrees_with_the_database() {
    orders_agree(&Shop::boot());
}

#[test]
fn flash_mode_report_agrees_with_the_sale_and_the_database() {
    flash_agrees(&Shop::boot());
}

/// Both modes against the app under real `spin up` (scripts/up.sh --spin), receivers included.
#[test]
fn both_modes_agree_under_real_spin() {
    let Some(shop) = Shop::boot_real_spin() else {
        return;
    };
    orders_agree(&shop);
    flash_agrees(&shop);
}

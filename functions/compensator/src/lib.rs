//! The `compensator` component: called by the cron trigger (`handle-cron-event`) to repair what
//! a crash or a lost message left half-done. It also answers a health route over HTTP.

use shop_adapter::health;
use spin_sdk::http::{IntoResponse, Request, Router};
use spin_sdk::http_component;

mod cron {
    wit_bindgen::generate!({
        world: "spin-cron",
        path: "../../wit/cron.wit",
    });
}

use cron::fermyon::spin_cron::cron_types::{Error as CronError, Metadata};

const COMPONENT: &str = "compensator";

struct Compensator;

impl cron::Guest for Compensator {
    fn handle_cron_event(metadata: Metadata) -> Result<(), CronError> {
        run_once(metadata.timestamp).map_err(|e| CronError::Other(format!("{e:#}")))
    }
}

cron::export!(Compensator with_types_in cron);

/// One compensation pass. Each step is idempotent, so an overlapping or repeated run is harmless.
fn run_once(timestamp: u64) -> anyhow::Result<()> {
    let conn = spin_sdk::sqlite::Connection::open_default()?;
    conn.execute(
        "CREATE TABLE IF NOT EXISTS compensator_runs (id INTEGER PRIMARY KEY CHECK (id = 1), last_run_at INTEGER NOT NULL, runs INTEGER NOT NULL)",
        &[],
    )?;
    conn.execute(
        "INSERT INTO compensator_runs (id, last_run_at, runs) VALUES (1, ?, 1) \
         ON CONFLICT(id) DO UPDATE SET last_run_at = excluded.last_run_at, runs = runs + 1",
        &[spin_sdk::sqlite::Value::Integer(timestamp as i64)],
    )?;
    // Every step runs even when an earlier one fails: one broken service must not stop the
    // repairs owed by the others. The run fails (and the cron trigger logs it) if any step did.
    let failures: Vec<String> = REPAIRS
        .iter()
        .filter_map(|(name, url)| call_repair(url).err().map(|e| format!("{name}: {e:#}")))
        .collect();
    anyhow::ensure!(failures.is_empty(), "{}", failures.join("; "));
    Ok(())
}

/// The repair endpoints, called through service chaining. Each owner does its own repair
/// atomically and idempotently, so overlapping or repeated runs are harmless:
/// - stock puts reservations whose expiry passed back on sale (on the Redis server's clock);
/// - order gives up abandoned idempotency claims, expires unpaid orders past their payment
///   window, and retries every stock release it still owes.
const REPAIRS: &[(&str, &str)] = &[
    (
        "expire reservations",
        "http://stock.spin.internal/api/stock/reservations/expire",
    ),
    (
        "order repairs",
        "http://order.spin.internal/api/orders/compensate",
    ),
];

/// POSTs to one repair endpoint as the admin (the repair routes are not open to the public).
fn call_repair(url: &str) -> anyhow::Result<()> {
    let token = spin_sdk::variables::get("admin_token")?;
    let req = spin_sdk::http::Request::post(url, Vec::<u8>::new())
        .header("authorization", format!("Bearer {token}"))
        .build();
    let resp: spin_sdk::http::Response = spin_sdk::http::run(spin_sdk::http::send(req))?;
    let status = *resp.status();
    anyhow::ensure!(
        status == 200,
        "{url} answered {status}: {}",
        String::from_utf8_lossy(resp.body())
    );
    Ok(())
}

#[http_component]
fn handle(req: Request) -> impl IntoResponse {
    let mut router = Router::new();
    router.get("/api/health/compensator", |_req: Request, _params| {
        health_route()
    });
    router.handle(req)
}

fn health_route() -> spin_sdk::http::Response {
    let redis = || -> anyhow::Result<()> {
        let url = spin_sdk::variables::get("redis_url")?;
        health::redis_check(&url)
    };
    health::report(
        COMPONENT,
        &[("sqlite", &health::sqlite_check), ("redis", &redis)],
    )
}

//! `cron-ticker`: a `[[trigger.cron]]` component for the host tests.
//!
//! Each run pushes `start:<timestamp>:<unix ms>` and, after sleeping the component variable
//! `busy_ms` (default 0), `end:<timestamp>:<unix ms>` onto the Redis list named by the variable
//! `list` (default `ticks`) at the variable `redis_url`. A run that lasts longer than the cron
//! interval lets a test show that runs overlap, as under the trigger-cron plugin: the next run
//! starts before the previous one ends.
//!
//! The same component also exports the HTTP handler (answers `cron-ticker http <path>`) and the
//! Redis handler (pushes `redis:<payload>` onto the list), to prove one component can serve all
//! three triggers at once, as the compensator and order functions do.
//!
//! Outbound HTTP probes, to show what a request does from each trigger: with the variable
//! `probe_urls` (comma-separated) set, a cron run GETs each URL and pushes
//! `probe cron <url> => <outcome>` instead of its start/end entries; a Redis message
//! `probe <url>` pushes `probe redis <url> => <outcome>`; and `GET .../probe?url=<url>` answers
//! `<outcome>`. An outcome is `ok <status> <body>` or `error <wasi:http error-code>`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use spin_sdk::redis::{Connection, RedisParameter};

mod cron {
    wit_bindgen::generate!({
        world: "spin-cron",
        path: "../../../../../wit/cron.wit",
    });
}

use cron::fermyon::spin_cron::cron_types::{Error as CronError, Metadata};

struct Ticker;

impl cron::Guest for Ticker {
    fn handle_cron_event(metadata: Metadata) -> Result<(), CronError> {
        let probes = spin_sdk::variables::get("probe_urls").unwrap_or_default();
        if !probes.is_empty() {
            return probe_all("cron", &probes).map_err(CronError::Other);
        }
        run(metadata.timestamp).map_err(CronError::Other)
    }
}

cron::export!(Ticker with_types_in cron);

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

fn run(timestamp: u64) -> Result<(), String> {
    let var = |name: &str| spin_sdk::variables::get(name).map_err(|e| format!("{name}: {e:?}"));
    let url = var("redis_url")?;
    let list = var("list").unwrap_or_else(|_| "ticks".to_owned());
    let busy_ms: u64 = var("busy_ms")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let conn = Connection::open(&url).map_err(|e| format!("open {url}: {e:?}"))?;
    let push = |what: &str| {
        let entry = format!("{what}:{timestamp}:{}", now_ms());
        conn.execute(
            "RPUSH",
            &[
                RedisParameter::Binary(list.clone().into_bytes()),
                RedisParameter::Binary(entry.into_bytes()),
            ],
        )
        .map(|_| ())
        .map_err(|e| format!("RPUSH: {e:?}"))
    };
    push("start")?;
    if busy_ms > 0 {
        std::thread::sleep(Duration::from_millis(busy_ms));
    }
    push("end")
}

/// GETs `url` and describes what happened.
async fn probe(url: &str) -> String {
    let req = spin_sdk::http::Request::get(url);
    match spin_sdk::http::send::<_, spin_sdk::http::Response>(req).await {
        Ok(resp) => format!(
            "ok {} {}",
            resp.status(),
            String::from_utf8_lossy(resp.body())
        ),
        Err(spin_sdk::http::SendError::Http(code)) => {
            format!(
                "error {}",
                format!("{code:?}").trim_start_matches("ErrorCode::")
            )
        }
        Err(e) => format!("error {e}"),
    }
}

/// Probes every comma-separated URL from a `trigger` handler and records the outcomes.
fn probe_all(trigger: &str, urls: &str) -> Result<(), String> {
    for url in urls.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        let outcome = spin_sdk::http::run(probe(url));
        push(format!("probe {trigger} {url} => {outcome}").into_bytes())?;
    }
    Ok(())
}

/// `RPUSH <list> <entry>` on the Redis at `redis_url`.
fn push(entry: Vec<u8>) -> Result<(), String> {
    let url = spin_sdk::variables::get("redis_url").map_err(|e| format!("{e:?}"))?;
    let list = spin_sdk::variables::get("list").unwrap_or_else(|_| "ticks".to_owned());
    let conn = Connection::open(&url).map_err(|e| format!("open {url}: {e:?}"))?;
    conn.execute(
        "RPUSH",
        &[
            RedisParameter::Binary(list.into_bytes()),
            RedisParameter::Binary(entry),
        ],
    )
    .map(|_| ())
    .map_err(|e| format!("RPUSH: {e:?}"))
}

#[spin_sdk::http_component]
async fn http(req: spin_sdk::http::Request) -> spin_sdk::http::Response {
    if req.path().ends_with("/probe") {
        let url = req.query().strip_prefix("url=").unwrap_or_default();
        return spin_sdk::http::Response::new(200, probe(url).await);
    }
    spin_sdk::http::Response::new(200, format!("cron-ticker http {}", req.path()))
}

#[spin_sdk::redis_component]
async fn on_message(payload: Vec<u8>) -> Result<(), String> {
    if let Some(url) = payload.strip_prefix(b"probe ") {
        let url = String::from_utf8_lossy(url).into_owned();
        let outcome = probe(&url).await;
        return push(format!("probe redis {url} => {outcome}").into_bytes());
    }
    let mut entry = b"redis:".to_vec();
    entry.extend_from_slice(&payload);
    push(entry)
}

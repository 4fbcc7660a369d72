//! `cron-ticker`: a `[[trigger.cron]]` component for the host tests.
//!
//! Each run pushes `start:<timestamp>:<unix ms>` and, after sleeping the component variable
//! `busy_ms` (default 0), `end:<timestamp>:<unix ms>` onto the Redis list named by the variable
//! `list` (default `ticks`) at the variable `redis_url`. A run that lasts longer than the cron
//! interval lets a test prove runs never overlap: the list must alternate start, end, start, ...
//!
//! The same component also exports the HTTP handler (answers `cron-ticker http <path>`) and the
//! Redis handler (pushes `redis:<payload>` onto the list), to prove one component can serve all
//! three triggers at once, as the compensator and order functions do.

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

#[spin_sdk::http_component]
fn http(req: spin_sdk::http::Request) -> spin_sdk::http::Response {
    spin_sdk::http::Response::new(200, format!("cron-ticker http {}", req.path()))
}

#[spin_sdk::redis_component]
fn on_message(payload: Vec<u8>) -> Result<(), String> {
    let url = spin_sdk::variables::get("redis_url").map_err(|e| format!("{e:?}"))?;
    let list = spin_sdk::variables::get("list").unwrap_or_else(|_| "ticks".to_owned());
    let conn = Connection::open(&url).map_err(|e| format!("open {url}: {e:?}"))?;
    let mut entry = b"redis:".to_vec();
    entry.extend_from_slice(&payload);
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

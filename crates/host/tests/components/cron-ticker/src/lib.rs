//! `cron-ticker`: a `[[trigger.cron]]` component for the host tests.
//!
//! Each run pushes `start:<timestamp>:<unix ms>` and, after sleeping the component variable
//! `busy_ms` (default 0), `end:<timestamp>:<unix ms>` onto the Redis list named by the variable
//! `list` (default `ticks`) at the variable `redis_url`. A run that lasts longer than the cron
//! interval lets a test prove runs never overlap: the list must alternate start, end, start, ...

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

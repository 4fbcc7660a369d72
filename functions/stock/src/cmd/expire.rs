//! `POST /api/stock/reservations/expire` `{now?}`: release every reservation whose expiry has
//! passed; the compensator calls it on each cron tick.
//!
//! Each batch is one Lua script (expire.lua) that releases due RESERVED reservations and removes
//! them from the expiry index in the same step, so the call is idempotent and two instances may
//! run it concurrently without releasing anything twice. "Now" is the Redis server's clock, the
//! one clock every instance shares. `now` (RFC 3339) expires as of another instant (tests, manual
//! repair). The route needs the internal token: nobody outside should be able to make the shop
//! run repair batches (or, with `now`, release reservations early).

use serde::Serialize;
use shop_adapter::auth::require_internal;
use shop_adapter::body::{parse_object, Fields};
use shop_adapter::respond::{json, HandlerResult};
use shop_adapter::Problem;
use shop_domain::timestamp::Timestamp;
use spin_sdk::http::Request;

use crate::redis::{bad_reply, keys, Store, EXPIRE};
use crate::settle::RETENTION_MS;

const BATCH: u32 = 100;
/// Bounds one request's work; whatever is left is picked up by the next call.
const MAX_BATCHES: u32 = 50;

#[derive(Serialize)]
struct Expired {
    released: u64,
    still_due: u64,
    now: Timestamp,
}

/// The most an expiry body (`{now?}`) may be: a few times its largest valid form.
pub const BODY_LIMIT: usize = 1024;

pub fn handle(req: &Request) -> HandlerResult {
    require_internal(req)?;
    let now = parse_now(req)?;
    let (released, still_due, now) = sweep(&Store::open()?, now, 0)?;
    Ok(json(
        200,
        &Expired {
            released,
            still_due,
            now,
        },
    ))
}

/// Releases, batch by batch, every RESERVED reservation expired for longer than `grace_ms` as of
/// `now` (the Redis clock when `None`). Returns (released, still due, the instant used).
pub fn sweep(
    store: &Store,
    now: Option<Timestamp>,
    grace_ms: u64,
) -> Result<(u64, u64, Timestamp), Problem> {
    let now_arg = now.map(|t| t.millis().to_string()).unwrap_or_default();
    let (batch, retention, grace) = (
        BATCH.to_string(),
        RETENTION_MS.to_string(),
        grace_ms.to_string(),
    );
    let mut released = 0u64;
    let mut last = None;
    for _ in 0..MAX_BATCHES {
        let reply = store.run(
            &EXPIRE,
            &[keys::EXPIRIES],
            &[
                &now_arg,
                &batch,
                keys::RESERVATION_PREFIX,
                keys::PRODUCT_PREFIX,
                &retention,
                &grace,
            ],
        )?;
        let parsed = match reply.as_slice() {
            [ok, n, due, at] if ok == "OK" => {
                n.parse::<u64>().ok().zip(due.parse::<u64>().ok()).zip(
                    at.parse::<i64>()
                        .ok()
                        .and_then(|ms| Timestamp::from_millis(ms).ok()),
                )
            }
            _ => None,
        };
        let ((n, due), at) = parsed.ok_or_else(|| bad_reply(&EXPIRE, &reply))?;
        released += n;
        last = Some((due, at));
        if due == 0 {
            break;
        }
    }
    let (still_due, now) = last.ok_or_else(|| bad_reply(&EXPIRE, &[]))?;
    Ok((released, still_due, now))
}

/// An empty body is `{}`.
fn parse_now(req: &Request) -> Result<Option<Timestamp>, Problem> {
    if req.body().iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let body = parse_object(req.body())?;
    Fields::root(&body)
        .opt_str("now")?
        .map(|s| {
            Timestamp::parse_rfc3339(s).map_err(|e| Problem::unprocessable("now", e.to_string()))
        })
        .transpose()
}

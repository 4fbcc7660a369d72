//! `POST /api/stock/reservations/expire` `{now?}`: the reservation TTL sweep, on demand (an
//! operator's repair, or a platform's scheduler); the stock receiver runs the same sweep on the
//! compensator's periodic ring.
//!
//! It also closes the flash sales whose window has ended: the units a sale still held go back
//! to its product's available stock (close_sales.lua).
//!
//! Releases every reservation expired for longer than the domain's
//! [`EXPIRY_GRACE_MS`](shop_domain::reservation::EXPIRY_GRACE_MS), the one rule of every sweep.
//! Each batch is one Lua script (expire.lua) that releases due RESERVED reservations and removes
//! them from the expiry index in the same step, so the call is idempotent and two instances may
//! run it concurrently without releasing anything twice. A reservation held for a paid order
//! (its OrderPaid came but could not be applied yet: hold.lua) keeps its units and is counted as
//! `held`. "Now" is the Redis server's clock, the one clock every instance shares. `now`
//! (RFC 3339) sweeps as of another instant (tests, manual repair). The route needs the internal
//! token: nobody outside should be able to make the shop run repair batches (or, with `now`,
//! release reservations early).

use serde::Serialize;
use shop_adapter::auth::require_internal;
use shop_adapter::body::{parse_object, Fields};
use shop_adapter::respond::{json, HandlerResult};
use shop_adapter::Problem;
use shop_domain::reservation::EXPIRY_GRACE_MS;
use shop_domain::timestamp::Timestamp;
use spin_sdk::http::Request;

use crate::redis::{bad_reply, keys, Store, CLOSE_SALES, EXPIRE};
use crate::settle::RETENTION_MS;

const BATCH: u32 = 100;
/// How often a sweep looks at (and alerts on) a reservation held for a paid order again.
const HELD_ALERT_EVERY_MS: u64 = 60 * 60 * 1000;
/// Bounds one request's work; whatever is left is picked up by the next call.
const MAX_BATCHES: u32 = 50;

/// What one sweep did.
#[derive(Debug, Serialize)]
pub struct Swept {
    pub released: u64,
    /// Due reservations left for the next call (this one ran out of batches).
    pub still_due: u64,
    /// Due reservations kept for a paid order whose OrderPaid is not applied yet: each one is
    /// an alert (its message is being retried, or waits in the dead letters for a replay).
    pub held: u64,
    /// Flash sales whose window ended, closed by this sweep, and the units they still held,
    /// given back to their products' available stock.
    pub sales_closed: u64,
    pub units_returned: u64,
    pub now: Timestamp,
}

/// The most an expiry body (`{now?}`) may be: a few times its largest valid form.
pub const BODY_LIMIT: usize = 1024;

pub fn handle(req: &Request) -> HandlerResult {
    require_internal(req)?;
    let now = parse_now(req)?;
    let swept = sweep(&Store::open()?, now)?;
    alert_held(&swept);
    Ok(json(200, &swept))
}

/// Logs an alert for reservations the sweep left held for a paid order.
pub fn alert_held(swept: &Swept) {
    if swept.held > 0 {
        eprintln!(
            "stock: ALERT the TTL sweep kept {} expired reservation(s) for paid orders whose OrderPaid is not applied yet (retried, or dead-lettered: GET /api/ops/dead-letters)",
            swept.held
        );
    }
}

/// Releases, batch by batch, every RESERVED reservation expired for longer than
/// [`EXPIRY_GRACE_MS`] as of `now` (the Redis clock when `None`), except those held for a paid
/// order.
pub fn sweep(store: &Store, now: Option<Timestamp>) -> Result<Swept, Problem> {
    let now_arg = now.map(|t| t.millis().to_string()).unwrap_or_default();
    let (batch, retention, grace) = (
        BATCH.to_string(),
        RETENTION_MS.to_string(),
        EXPIRY_GRACE_MS.to_string(),
    );
    let recheck = HELD_ALERT_EVERY_MS.to_string();
    let (mut released, mut held) = (0u64, 0u64);
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
                &recheck,
                keys::SALE_PREFIX,
            ],
        )?;
        let (n, due, at, kept) = parse_batch(&reply).ok_or_else(|| bad_reply(&EXPIRE, &reply))?;
        released += n;
        held += kept;
        last = Some((due, at));
        if due == 0 {
            break;
        }
    }
    let (still_due, now) = last.ok_or_else(|| bad_reply(&EXPIRE, &[]))?;
    let (sales_closed, units_returned) = close_sales(store, &now_arg)?;
    Ok(Swept {
        released,
        still_due,
        held,
        sales_closed,
        units_returned,
        now,
    })
}

/// Closes, batch by batch, every flash sale whose window has ended (close_sales.lua): what it
/// still held goes back to its product. Returns (sales closed, units returned).
fn close_sales(store: &Store, now_arg: &str) -> Result<(u64, u64), Problem> {
    let (mut closed, mut returned) = (0u64, 0u64);
    let batch = BATCH.to_string();
    for _ in 0..MAX_BATCHES {
        let reply = store.run(
            &CLOSE_SALES,
            &[keys::SALE_ENDS],
            &[now_arg, keys::SALE_PREFIX, keys::PRODUCT_PREFIX, &batch],
        )?;
        let n = |i: usize| reply.get(i).and_then(|s| s.parse::<u64>().ok());
        let (Some(c), Some(r), Some(due)) = (n(1), n(2), n(3)) else {
            return Err(bad_reply(&CLOSE_SALES, &reply));
        };
        (closed, returned) = (closed + c, returned + r);
        if due == 0 {
            break;
        }
    }
    Ok((closed, returned))
}

/// expire.lua's `{"OK", released, still_due, now_ms, held}`.
fn parse_batch(reply: &[String]) -> Option<(u64, u64, Timestamp, u64)> {
    let [ok, n, due, at, held] = reply else {
        return None;
    };
    let at = Timestamp::from_millis(at.parse::<i64>().ok()?).ok()?;
    (ok == "OK").then_some(())?;
    Some((n.parse().ok()?, due.parse().ok()?, at, held.parse().ok()?))
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

//! `POST /api/coupons/events/drain`: the coupon context's receiver over HTTP, for a platform
//! with no Redis trigger (an external scheduler calls this route instead of a doorbell waking
//! `coupon-events`). It does what a `sweep` ring does: drain the order messages (confirm and
//! cancel redemptions, inbox), cancel holds whose order never came, purge old inbox rows.
//! Needs the internal token; idempotent like the receiver itself.

use shop_adapter::respond::{json, HandlerResult};
use shop_adapter::Problem;
use spin_sdk::http::Request;

use crate::events;

pub fn handle(req: &Request) -> HandlerResult {
    shop_adapter::auth::require_internal(req)?;
    let received = events::receive(true).map_err(|e| {
        eprintln!("coupon: drain over HTTP failed: {e:#}");
        Problem::unavailable("the event stream or the database is unavailable, retry later")
    })?;
    Ok(json(200, &received))
}

//! `POST /api/orders/events/drain`: the order context's receiver over HTTP, for a platform with
//! no Redis trigger (Fermyon Cloud), where an external scheduler calls this route instead of a
//! doorbell waking `order-events`. It does what a `sweep` ring does: drain the payment messages
//! (inbox, one transaction per batch), expire unpaid orders, give up abandoned claims, purge
//! finished keys. Needs the internal token; idempotent like the receiver itself.

use shop_adapter::respond::{json, HandlerResult};
use shop_adapter::Problem;
use spin_sdk::http::Request;

use crate::payments;

pub fn handle(req: &Request) -> HandlerResult {
    shop_adapter::auth::require_internal(req)?;
    let received = payments::receive(true).map_err(|e| {
        eprintln!("order: drain over HTTP failed: {e:#}");
        Problem::unavailable("the event stream or the database is unavailable, retry later")
    })?;
    Ok(json(200, &received))
}

//! `POST /api/stock/events/drain`: the stock context's receiver over HTTP, for a platform with
//! no Redis trigger (Fermyon Cloud), where an external scheduler calls this route instead of a
//! doorbell waking `stock-events`: drain the order messages (settle the reservations they name)
//! and run the TTL sweep. Needs the internal token; idempotent like the receiver itself.

use shop_adapter::respond::{json, HandlerResult};
use shop_adapter::Problem;

pub fn handle() -> HandlerResult {
    let received = crate::events::receive(true).map_err(|e| {
        eprintln!("stock: drain over HTTP failed: {e:#}");
        Problem::unavailable("the stock store is unavailable, retry later")
    })?;
    Ok(json(200, &received))
}

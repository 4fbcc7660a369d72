//! `GET /api/ops/breakers` (admin): every circuit breaker shared in Redis
//! ([`shop_adapter::breaker`]): its state (`closed`, `open`, `half_open`), when it may half-open,
//! the calls and failures in its error window and slow window, and whether a probe is in flight.
//! A breaker appears once a call through it was recorded.

use serde_json::json;
use shop_adapter::breaker;
use shop_adapter::respond::{json, HandlerResult};
use shop_adapter::Problem;
use spin_sdk::http::Request;

pub fn route(req: &Request) -> HandlerResult {
    crate::require_admin(req)?;
    let url = shop_adapter::vars::get("redis_url")
        .map_err(|e| Problem::internal("read variable redis_url", e))?;
    let unavailable = |e: &dyn std::fmt::Display| {
        eprintln!("compensator: breakers: {e}");
        Problem::unavailable("Redis, which holds the breakers, is unavailable")
    };
    let conn = shop_adapter::redis::connect(&url).map_err(|e| unavailable(&e))?;
    let breakers = breaker::statuses(&conn).map_err(|e| unavailable(&e))?;
    Ok(json(200, &json!({ "breakers": breakers })))
}

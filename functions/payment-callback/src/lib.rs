//! The `payment-callback` component. Thin: verify and parse the provider's delivery with the
//! domain, persist, respond.
//!
//! Routes (JSON; errors `application/problem+json`):
//! - `POST /api/payments/webhook` -> [`webhook`]
//! - `POST /api/payments/refunds/drain` (internal token) -> [`refunds`]
//! - `GET  /api/health/payment-callback` (SQLite `payments`, Redis)

mod config;
mod db;
mod refunds;
mod store;
mod webhook;

use shop_adapter::body::Incoming;
use shop_adapter::respond::method_not_allowed;
use shop_adapter::{health, Problem};
use spin_sdk::http::{IncomingRequest, Method, Response};
use spin_sdk::http_component;

const COMPONENT: &str = "payment-callback";

/// Routing on the request's head: only the webhook reads a body (at most its limit; the
/// signature that authenticates it covers the body, so it cannot be checked first).
#[http_component]
async fn handle(incoming: IncomingRequest) -> Response {
    let incoming = Incoming::new(incoming);
    let path = incoming.head().path().trim_end_matches('/').to_owned();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let method = incoming.head().method().clone();
    let result = match (&method, segments.as_slice()) {
        (Method::Post, ["api", "payments", "webhook"]) => {
            match incoming.read(webhook::MAX_BODY_BYTES).await {
                Ok(req) => webhook::handle(&req),
                Err(too_large) => Err(too_large),
            }
        }
        (_, ["api", "payments", "webhook"]) => return method_not_allowed("POST"),
        (Method::Post, ["api", "payments", "refunds", "drain"]) => match incoming.read(0).await {
            Ok(req) => refunds_drain(&req),
            Err(too_large) => Err(too_large),
        },
        (_, ["api", "payments", "refunds", "drain"]) => return method_not_allowed("POST"),
        (Method::Get, ["api", "health", "payment-callback"]) => return health_route(),
        (_, ["api", "health", "payment-callback"]) => return method_not_allowed("GET"),
        _ => Err(Problem::not_found(format!("no route for {path}"))),
    };
    shop_adapter::respond::finish(result)
}

/// `POST /api/payments/refunds/drain` (internal token): the refunds receiver over HTTP, for a
/// platform with no Redis trigger (an external scheduler calls it) and for the compensator.
fn refunds_drain(req: &spin_sdk::http::Request) -> shop_adapter::respond::HandlerResult {
    shop_adapter::auth::require_internal(req)?;
    let drained = refunds::receive().map_err(|e| {
        eprintln!("refunds: drain over HTTP failed: {e:#}");
        Problem::unavailable("the event stream, the database or the provider failed, retry later")
    })?;
    Ok(shop_adapter::respond::json(200, &drained))
}

fn health_route() -> Response {
    let redis = || -> anyhow::Result<()> { health::redis_check(&config::redis_url()?) };
    health::report(
        COMPONENT,
        &[
            ("sqlite", &|| health::sqlite_check(db::LABEL)),
            ("redis", &redis),
        ],
    )
}

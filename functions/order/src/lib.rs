//! The `order` component. Thin: parse the request, call the domain, persist, respond.
//!
//! Routes (all JSON, errors `application/problem+json`):
//! - `POST /api/orders` (Idempotency-Key) -> [`cmd::create`]
//! - `GET  /api/orders/{order_id}` -> [`cmd::get`]
//! - `GET  /api/orders?user_id=..&limit=..&cursor=..` -> [`cmd::list`]
//! - `POST /api/orders/{order_id}/cancel` -> [`cmd::cancel`]
//! - `POST /api/orders/compensate` (the compensator's tick) -> [`cmd::compensate`]
//! - `POST /api/orders/events/drain` (the receiver over HTTP, no Redis trigger) -> [`cmd::drain`]
//! - `GET  /api/health/order`
//!
//! The customer routes (create, get, list, cancel) need `Authorization: Bearer <JWT>`
//! ([`shop_adapter::identity`]); get and list also take the admin token.

mod cmd;
mod coupon;
mod db;
mod flash;
mod guards;
mod ids;
mod payments;
mod problems;
mod retention;
mod settle;
mod stock;
mod store;
mod sweep;
mod trace;
mod view;

use shop_adapter::body::Incoming;
use shop_adapter::respond::method_not_allowed;
use shop_adapter::{health, Problem};
use spin_sdk::http::{IncomingRequest, Method, Response};
use spin_sdk::http_component;

const COMPONENT: &str = "order";

/// Routing by method and path segments, on the request's head: only order creation reads a body
/// (after its caller is authenticated, up to its limit); no other route reads one. Async because
/// creating and cancelling an order call the stock component through service chaining.
#[http_component]
async fn handle(incoming: IncomingRequest) -> Response {
    let incoming = Incoming::new(incoming);
    let path = incoming.head().path().trim_end_matches('/').to_owned();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let method = incoming.head().method().clone();
    if let (Method::Post, ["api", "orders"]) = (&method, segments.as_slice()) {
        return cmd::create::handle(incoming).await;
    }
    let req = incoming.without_body();
    let result = match (&method, segments.as_slice()) {
        (Method::Get, ["api", "health", "order"]) => return health_route(),
        (Method::Post, ["api", "orders", "compensate"]) => cmd::compensate::handle(&req).await,
        (_, ["api", "orders", "compensate"]) => return method_not_allowed("POST"),
        (Method::Post, ["api", "orders", "events", "drain"]) => cmd::drain::handle(&req),
        (_, ["api", "orders", "events", "drain"]) => return method_not_allowed("POST"),
        (Method::Get, ["api", "orders"]) => cmd::list::handle(&req),
        (Method::Get, ["api", "orders", id]) => cmd::get::handle(&req, id),
        (Method::Post, ["api", "orders", id, "cancel"]) => cmd::cancel::handle(&req, id).await,
        (_, ["api", "orders"]) => return method_not_allowed("GET, POST"),
        (_, ["api", "orders", _]) => return method_not_allowed("GET"),
        (_, ["api", "orders", _, "cancel"]) => return method_not_allowed("POST"),
        (_, ["api", "health", "order"]) => return method_not_allowed("GET"),
        _ => Err(Problem::not_found(format!("no route for {path}"))),
    };
    shop_adapter::respond::finish(result)
}

/// Every shard's database answers (a misconfigured `order_shards` fails the check).
fn sqlite_shards() -> anyhow::Result<()> {
    let count = db::shard_count().map_err(|p| anyhow::anyhow!("{}", p.detail))?;
    count
        .all()
        .try_for_each(|i| health::sqlite_check(&i.label()))
}

fn health_route() -> Response {
    let redis = || -> anyhow::Result<()> {
        let url = shop_adapter::vars::get("redis_url")?;
        health::redis_check(&url)
    };
    health::report(COMPONENT, &[("sqlite", &sqlite_shards), ("redis", &redis)])
}

//! The `coupon` component: coupons an admin defines, redeemed by TCC (try / confirm / cancel).
//! Thin: parse the request, call the domain (`shop_domain::coupon`) and the store, respond.
//!
//! Routes (all JSON, errors `application/problem+json`):
//! - `PUT  /api/coupons/{code}` (admin) -> [`cmd::put`]
//! - `GET  /api/coupons/{code}` (admin) -> [`cmd::get`]
//! - `POST /api/coupons/{code}/redemptions` (internal: try) -> [`cmd::redeem`]
//! - `GET  /api/coupons/{code}/redemptions/{id}` (internal) -> [`cmd::redemption::get`]
//! - `POST /api/coupons/{code}/redemptions/{id}/confirm` (internal) -> [`cmd::redemption::settle`]
//! - `POST /api/coupons/{code}/redemptions/{id}/cancel` (internal) -> [`cmd::redemption::settle`]
//! - `POST /api/coupons/events/drain` (internal: the receiver over HTTP) -> [`cmd::drain`]
//! - `GET  /api/health/coupon`
//!
//! The same wasm is the `coupon-events` receiver on the Redis trigger ([`events`]).

mod cmd;
mod db;
mod events;
mod store;
mod view;

use shop_adapter::auth::{require_admin, require_internal};
use shop_adapter::body::Incoming;
use shop_adapter::respond::method_not_allowed;
use shop_adapter::{health, Problem};
use shop_domain::coupon::RedemptionAction;
use spin_sdk::http::{IncomingRequest, Method, Request, Response};
use spin_sdk::http_component;

const COMPONENT: &str = "coupon";

/// Reads the body a route takes (its caller authenticated first, then at most the route's
/// limit), then routes.
#[http_component]
async fn handle(incoming: IncomingRequest) -> Response {
    let incoming = Incoming::new(incoming);
    let read = match body_limit(incoming.head()) {
        Ok(limit) => incoming.read_if(limit).await,
        Err(refused) => Err(refused),
    };
    match read {
        Ok(req) => route(req),
        Err(problem) => problem.into_response(),
    }
}

/// The routes that take a body, each with its caller's check and its limit; `None`: the route
/// reads no body.
fn body_limit(head: &Request) -> Result<Option<usize>, Problem> {
    let path = head.path().trim_end_matches('/');
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    match (head.method(), segments.as_slice()) {
        (Method::Put, ["api", "coupons", _]) => {
            require_admin(head)?;
            Ok(Some(cmd::put::BODY_LIMIT))
        }
        (Method::Post, ["api", "coupons", _, "redemptions"]) => {
            require_internal(head)?;
            Ok(Some(cmd::redeem::BODY_LIMIT))
        }
        _ => Ok(None),
    }
}

fn route(req: Request) -> Response {
    let path = req.path().trim_end_matches('/').to_owned();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let method = req.method().clone();
    let result = match (&method, segments.as_slice()) {
        (Method::Get, ["api", "health", "coupon"]) => return health_route(),
        (_, ["api", "health", "coupon"]) => return method_not_allowed("GET"),
        (Method::Post, ["api", "coupons", "events", "drain"]) => cmd::drain::handle(&req),
        (_, ["api", "coupons", "events", "drain"]) => return method_not_allowed("POST"),
        (Method::Put, ["api", "coupons", code]) => cmd::put::handle(&req, code),
        (Method::Get, ["api", "coupons", code]) => cmd::get::handle(&req, code),
        (_, ["api", "coupons", _]) => return method_not_allowed("GET, PUT"),
        (Method::Post, ["api", "coupons", code, "redemptions"]) => cmd::redeem::handle(&req, code),
        (_, ["api", "coupons", _, "redemptions"]) => return method_not_allowed("POST"),
        (Method::Get, ["api", "coupons", code, "redemptions", id]) => {
            cmd::redemption::get(&req, code, id)
        }
        (_, ["api", "coupons", _, "redemptions", _]) => return method_not_allowed("GET"),
        (Method::Post, ["api", "coupons", code, "redemptions", id, step]) => match *step {
            "confirm" => cmd::redemption::settle(&req, code, id, RedemptionAction::Confirm),
            "cancel" => cmd::redemption::settle(&req, code, id, RedemptionAction::Cancel),
            _ => Err(Problem::not_found(format!("no route for {path}"))),
        },
        (_, ["api", "coupons", _, "redemptions", _, "confirm" | "cancel"]) => {
            return method_not_allowed("POST")
        }
        _ => Err(Problem::not_found(format!("no route for {path}"))),
    };
    shop_adapter::respond::finish(result)
}

fn health_route() -> Response {
    health::report(
        COMPONENT,
        &[("sqlite", &|| health::sqlite_check(db::LABEL))],
    )
}

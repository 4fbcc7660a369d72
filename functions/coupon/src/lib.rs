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
//! - `GET  /api/health/coupon`

mod cmd;
mod db;
mod store;
mod view;

use shop_adapter::respond::method_not_allowed;
use shop_adapter::{health, Problem};
use shop_domain::coupon::RedemptionAction;
use spin_sdk::http::{Method, Request, Response};
use spin_sdk::http_component;

const COMPONENT: &str = "coupon";

#[http_component]
fn handle(req: Request) -> Response {
    let path = req.path().trim_end_matches('/').to_owned();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let method = req.method().clone();
    let result = match (&method, segments.as_slice()) {
        (Method::Get, ["api", "health", "coupon"]) => return health_route(),
        (_, ["api", "health", "coupon"]) => return method_not_allowed("GET"),
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

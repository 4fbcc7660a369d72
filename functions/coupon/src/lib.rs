//! The `coupon` component. Thin: parse the request, call the domain, persist, respond.

use shop_adapter::health;
use spin_sdk::http::{IntoResponse, Request, Router};
use spin_sdk::http_component;

const COMPONENT: &str = "coupon";

#[http_component]
fn handle(req: Request) -> impl IntoResponse {
    let mut router = Router::new();
    router.get("/api/health/coupon", |_req: Request, _params| {
        health_route()
    });
    router.handle(req)
}

fn health_route() -> spin_sdk::http::Response {
    health::report(
        COMPONENT,
        &[("sqlite", &|| health::sqlite_check("coupons"))],
    )
}

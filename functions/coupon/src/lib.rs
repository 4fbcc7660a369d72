//! The `coupon` component. Thin: parse the request, call the domain, persist, respond.

use shop_adapter::respond::method_not_allowed;
use shop_adapter::{health, Problem};
use spin_sdk::http::{IntoResponse, Request, Router};
use spin_sdk::http_component;

const COMPONENT: &str = "coupon";

#[http_component]
fn handle(req: Request) -> impl IntoResponse {
    let mut router = Router::new();
    router.get("/api/health/coupon", |_req: Request, _params| {
        health_route()
    });
    // 405 with `Allow` (the router's own 405 has none), and a problem+json 404 elsewhere.
    router.any("/api/health/coupon", |_req: Request, _params| {
        method_not_allowed("GET")
    });
    router.any("/*", |req: Request, _params| {
        Problem::not_found(format!("no route for {}", req.path())).into_response()
    });
    router.handle(req)
}

fn health_route() -> spin_sdk::http::Response {
    health::report(
        COMPONENT,
        &[("sqlite", &|| health::sqlite_check("coupons"))],
    )
}

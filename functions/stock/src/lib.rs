//! The `stock` component. Thin: parse the request, call the domain, persist, respond.

use shop_adapter::health;
use spin_sdk::http::{IntoResponse, Request, Router};
use spin_sdk::http_component;

const COMPONENT: &str = "stock";

#[http_component]
fn handle(req: Request) -> impl IntoResponse {
    let mut router = Router::new();
    router.get("/api/health/stock", |_req: Request, _params| health_route());
    router.handle(req)
}

fn health_route() -> spin_sdk::http::Response {
    let redis = || -> anyhow::Result<()> {
        let url = spin_sdk::variables::get("redis_url")?;
        health::redis_check(&url)
    };
    health::report(COMPONENT, &[("redis", &redis)])
}

//! The `order` component. Thin: parse the request, call the domain, persist, respond.

use shop_adapter::health;
use spin_sdk::http::{IntoResponse, Request, Router};
use spin_sdk::http_component;

const COMPONENT: &str = "order";

#[http_component]
fn handle(req: Request) -> impl IntoResponse {
    let mut router = Router::new();
    router.get("/api/health/order", |_req: Request, _params| health_route());
    router.handle(req)
}

fn health_route() -> spin_sdk::http::Response {
    let redis = || -> anyhow::Result<()> {
        let url = spin_sdk::variables::get("redis_url")?;
        health::redis_check(&url)
    };
    health::report(COMPONENT, &[("sqlite", &health::sqlite_check), ("redis", &redis)])
}

/// Payment events arrive on the Redis channel named by the `[[trigger.redis]]` entry. Until the
/// payments issue lands, the order component only acknowledges them in the log.
#[spin_sdk::redis_component]
fn on_payment_event(payload: Vec<u8>) -> anyhow::Result<()> {
    eprintln!("order: payment event of {} bytes received", payload.len());
    Ok(())
}

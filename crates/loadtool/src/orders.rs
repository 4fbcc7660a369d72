//! Order mode: `--requests` orders from `--customers` customers in turn, each under a fresh
//! Idempotency-Key, at most `--concurrency` at once.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use hyper::Method;
use serde::Serialize;
use serde_json::json;

use crate::cli::OrdersArgs;
use crate::report::Report;
use crate::Ctx;

/// What order mode adds to the report.
#[derive(Debug, Clone, Serialize)]
pub struct OrdersOutcome {
    pub sku: String,
    /// Orders the app said it created (201).
    pub created: u64,
}

pub(crate) async fn run(ctx: Arc<Ctx>, args: &OrdersArgs) -> Result<Report> {
    ctx.setup_product(&args.sku, &args.product).await?;
    let users = ctx.customers(args.customers.max(1));
    let bearers = Arc::new(ctx.minter.bearers(&users)?);
    let body = Arc::new(json!({"items": [{"sku": args.sku, "quantity": args.quantity}]}));
    let began = Instant::now();
    let answers = ctx
        .drive(args.requests, "orders", |i| {
            let (ctx, bearers, body) = (ctx.clone(), bearers.clone(), body.clone());
            async move {
                let bearer = &bearers[(i % bearers.len() as u64) as usize];
                let key = ctx.idempotency_key("order", i);
                let headers = [
                    ("authorization", bearer.as_str()),
                    ("idempotency-key", &key),
                ];
                let reply = ctx
                    .http
                    .send(Method::POST, "/api/orders", &headers, Some(&body))
                    .await?;
                Ok((ctx.sample(&reply), reply.text()))
            }
        })
        .await?;
    let mut report = Report::new("orders", &ctx, &answers, began, users.len());
    report.orders = Some(OrdersOutcome {
        sku: args.sku.clone(),
        created: report.status.get("201").copied().unwrap_or(0),
    });
    report.product = ctx
        .get_json(&format!("/api/products/{}", args.sku))
        .await
        .ok();
    Ok(report)
}

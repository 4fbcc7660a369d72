//! The stock component, reached only through Spin service chaining
//! (`http://stock.spin.internal/...`, granted in spin.toml). Never a crate dependency: the two
//! components share nothing but this HTTP contract (see openapi.yaml).

use serde_json::{json, Value};
use spin_sdk::http::{Method, Request, Response};

const BASE: &str = "http://stock.spin.internal";

/// A reserved line with the price snapshot the stock component took when reserving.
#[derive(Debug, Clone)]
pub struct ReservedItem {
    pub sku: String,
    pub unit_price: Option<i64>,
    pub currency: Option<String>,
}

/// Why a call to the stock component did not give what was asked.
#[derive(Debug)]
pub enum StockError {
    /// 404: the SKU (or reservation) does not exist.
    NotFound(Value),
    /// 409: not enough stock (the body names the SKUs) or another conflict.
    Conflict(Value),
    /// 400/422: the stock component refused the request as invalid.
    Rejected(u16, Value),
    /// The reservation id is known but no longer holds stock (RELEASED by expiry or a
    /// compensator, or CONFIRMED): its status.
    Settled(String),
    /// 429: the stock component's rate limit refused the call (nothing was reserved); retry
    /// after this many seconds. Not a failure of the stock component (the breaker does not
    /// count it).
    Limited(u64),
    /// Anything else: unreachable, 5xx, unreadable answer. The outcome is unknown.
    Unavailable(String),
}

impl std::fmt::Display for StockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StockError::NotFound(b) => write!(f, "not found: {b}"),
            StockError::Conflict(b) => write!(f, "conflict: {b}"),
            StockError::Rejected(s, b) => write!(f, "rejected ({s}): {b}"),
            StockError::Settled(s) => write!(f, "reservation already {s}"),
            StockError::Limited(s) => write!(f, "rate limited: retry after {s} s"),
            StockError::Unavailable(e) => write!(f, "unavailable: {e}"),
        }
    }
}

async fn call(
    method: Method,
    path: &str,
    body: Option<&Value>,
    traceparent: Option<&str>,
) -> Result<(u16, Value, Option<u64>), StockError> {
    let auth = shop_adapter::auth::internal_authorization()
        .map_err(|e| StockError::Unavailable(format!("read variable internal_token: {e}")))?;
    let mut builder = Request::builder();
    builder
        .method(method)
        .uri(format!("{BASE}{path}"))
        .header("authorization", auth);
    if let Some(tp) = traceparent {
        builder.header("traceparent", tp);
    }
    if let Some(b) = body {
        builder.header("content-type", "application/json");
        builder.body(serde_json::to_vec(b).unwrap_or_default());
    }
    // Every call is bounded (the breaker's `timeout`): a stock component that never answers
    // costs a request that long, and counts as failed.
    let timeout_ms = crate::guards::stock_breaker()
        .map_err(|p| StockError::Unavailable(p.detail))?
        .config
        .timeout_ms;
    let sent = shop_adapter::breaker::within(timeout_ms, spin_sdk::http::send(builder.build()));
    let resp: Response = sent
        .await
        .ok_or_else(|| {
            StockError::Unavailable(format!("no answer within {timeout_ms} ms (timed out)"))
        })?
        .map_err(|e| StockError::Unavailable(e.to_string()))?;
    let status = *resp.status();
    let retry_after = resp
        .header("retry-after")
        .and_then(|v| v.as_str())
        .and_then(|v| v.trim().parse().ok());
    let value = serde_json::from_slice(resp.body()).unwrap_or(Value::Null);
    Ok((status, value, retry_after))
}

fn classify(status: u16, body: Value, retry_after: Option<u64>) -> StockError {
    match status {
        429 => StockError::Limited(retry_after.unwrap_or(1)),
        404 => StockError::NotFound(body),
        409 => StockError::Conflict(body),
        400 | 422 => StockError::Rejected(status, body),
        _ => StockError::Unavailable(format!("stock answered {status}: {body}")),
    }
}

/// A reservation as the stock component holds it: the lines with their price snapshot, and when
/// it expires (the order's payment deadline: one clock, the stock component's).
#[derive(Debug, Clone)]
pub struct Reservation {
    pub items: Vec<ReservedItem>,
    pub expires_ms: Option<i64>,
}

/// `POST /api/stock/reservations`: all items or none. The same `reservation_id` (with the same
/// items and TTL) answers the same result again without deducting twice. The units are held for
/// `customer`, whose hoarding caps the stock component enforces in the same step (409).
pub async fn reserve(
    customer: &str,
    reservation_id: &str,
    items: &[(String, u32)],
    ttl_seconds: u32,
    traceparent: Option<&str>,
) -> Result<Reservation, StockError> {
    let body = json!({
        "reservation_id": reservation_id,
        "items": items.iter().map(|(sku, q)| json!({"sku": sku, "quantity": q})).collect::<Vec<_>>(),
        "ttl_seconds": ttl_seconds,
        "customer_id": customer,
    });
    let (status, body, retry_after) = call(
        Method::Post,
        "/api/stock/reservations",
        Some(&body),
        traceparent,
    )
    .await?;
    if status != 200 && status != 201 {
        return Err(classify(status, body, retry_after));
    }
    if let Some(status) = body["status"].as_str().filter(|s| *s != "RESERVED") {
        return Err(StockError::Settled(status.to_owned()));
    }
    let reserved = body["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| ReservedItem {
                    sku: i["sku"].as_str().unwrap_or_default().to_owned(),
                    unit_price: i["unit_price"].as_i64(),
                    currency: i["currency"].as_str().map(str::to_owned),
                })
                .collect()
        })
        .unwrap_or_default();
    let expires_ms = body["expires_at"]
        .as_str()
        .and_then(|t| shop_domain::timestamp::Timestamp::parse_rfc3339(t).ok())
        .map(|t| t.millis());
    Ok(Reservation {
        items: reserved,
        expires_ms,
    })
}

/// `POST /api/stock/reservations/{id}/release`. Idempotent; an unknown reservation has nothing
/// to release, which counts as done.
pub async fn release(reservation_id: &str, traceparent: Option<&str>) -> Result<(), StockError> {
    let path = format!("/api/stock/reservations/{reservation_id}/release");
    let (status, body, retry_after) = call(Method::Post, &path, None, traceparent).await?;
    match status {
        200..=299 | 404 => Ok(()),
        _ => Err(classify(status, body, retry_after)),
    }
}

/// The SKUs a 409 problem names (`skus`), if any.
pub fn short_skus(body: &Value) -> Vec<String> {
    body["skus"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

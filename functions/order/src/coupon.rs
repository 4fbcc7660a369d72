//! The coupon component, reached only through Spin service chaining
//! (`http://coupon.spin.internal/...`, granted in spin.toml) with the internal token: the TCC
//! try an order makes before it is written (docs/coupons.md). Never a crate dependency.
//!
//! Every call is bounded by the coupon breaker's timeout (`breaker_order_coupon`) and recorded
//! by it ([`crate::guards::guarded`]): a coupon component that hangs costs a request that long.

use serde_json::{json, Value};
use shop_domain::Money;
use spin_sdk::http::{Method, Request, Response};

const BASE: &str = "http://coupon.spin.internal";

/// Why the coupon was not held for the order.
#[derive(Debug)]
pub enum CouponError {
    /// 404: no coupon with this code.
    Unknown,
    /// 409 / 422: the coupon cannot be used for this order (expired, sold out, the customer's
    /// limit, below its minimum, another currency, the hold already cancelled, the redemption id
    /// tried for another subtotal): the problem's type slug and detail, and its `min_subtotal`.
    Refused {
        slug: String,
        detail: String,
        min_subtotal: Option<i64>,
    },
    /// Unreachable, timed out, 5xx or an unreadable answer: the hold may or may not exist.
    Unavailable(String),
}

impl std::fmt::Display for CouponError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CouponError::Unknown => f.write_str("unknown coupon"),
            CouponError::Refused { slug, detail, .. } => write!(f, "refused ({slug}): {detail}"),
            CouponError::Unavailable(e) => write!(f, "unavailable: {e}"),
        }
    }
}

/// `POST /api/coupons/{code}/redemptions`: hold one redemption of `code` for the order
/// `redemption_id` of `user` with `subtotal`; the discount held. The same call again answers the
/// same hold (the coupon context replays it), so a retry never takes a second one.
pub async fn try_hold(
    code: &str,
    redemption_id: &str,
    user: &str,
    subtotal: Money,
    timeout_ms: u64,
    traceparent: Option<&str>,
) -> Result<Money, CouponError> {
    let body = json!({
        "redemption_id": redemption_id,
        "user_id": user,
        "subtotal": subtotal.minor(),
        "currency": subtotal.currency().as_str(),
    });
    let path = format!("/api/coupons/{code}/redemptions");
    let (status, body) = call(&path, &body, timeout_ms, traceparent).await?;
    match status {
        200 | 201 => held_discount(&body, subtotal),
        404 => Err(CouponError::Unknown),
        409 | 422 => Err(refused(&body)),
        _ => Err(CouponError::Unavailable(format!(
            "coupon answered {status}: {body}"
        ))),
    }
}

/// The discount of a HELD answer, in the subtotal's currency.
fn held_discount(body: &Value, subtotal: Money) -> Result<Money, CouponError> {
    let unreadable = || CouponError::Unavailable(format!("unreadable hold: {body}"));
    if body["status"].as_str() != Some("HELD") && body["status"].as_str() != Some("CONFIRMED") {
        return Err(refused(body));
    }
    let minor = body["discount"].as_i64().ok_or_else(unreadable)?;
    Money::new(minor, subtotal.currency()).map_err(|_| unreadable())
}

fn refused(body: &Value) -> CouponError {
    let slug = body["type"]
        .as_str()
        .and_then(|t| t.rsplit('/').next())
        .unwrap_or("coupon-refused");
    CouponError::Refused {
        slug: slug.to_owned(),
        detail: body["detail"]
            .as_str()
            .unwrap_or("the coupon cannot be used")
            .to_owned(),
        min_subtotal: body["min_subtotal"].as_i64(),
    }
}

async fn call(
    path: &str,
    body: &Value,
    timeout_ms: u64,
    traceparent: Option<&str>,
) -> Result<(u16, Value), CouponError> {
    let auth = shop_adapter::auth::internal_authorization()
        .map_err(|e| CouponError::Unavailable(format!("read variable internal_token: {e}")))?;
    let mut builder = Request::builder();
    builder
        .method(Method::Post)
        .uri(format!("{BASE}{path}"))
        .header("authorization", auth)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(body).unwrap_or_default());
    if let Some(tp) = traceparent {
        builder.header("traceparent", tp);
    }
    // Spin applies no timeout to `*.spin.internal`: the breaker's bounds the call.
    let sent = shop_adapter::breaker::within(timeout_ms, spin_sdk::http::send(builder.build()));
    let resp: Response = sent
        .await
        .ok_or_else(|| {
            CouponError::Unavailable(format!("no answer within {timeout_ms} ms (timed out)"))
        })?
        .map_err(|e| CouponError::Unavailable(e.to_string()))?;
    let value = serde_json::from_slice(resp.body()).unwrap_or(Value::Null);
    Ok((*resp.status(), value))
}

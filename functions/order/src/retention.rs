//! How long the order context remembers finished Idempotency-Key claims.
//!
//! A completed or failed claim answers retries with the same key; once it is purged, the same
//! key would create a new order. So the retention (variable `idempotency_retention_hours`,
//! default 7 days) must outlast any client's retry window (Stripe keeps keys 24 hours). Claims
//! still in progress are never purged here: the sweep gives them up first.

const DEFAULT_HOURS: i64 = 24 * 7;

/// The retention in milliseconds, from the variable or the default.
pub fn keep_ms() -> i64 {
    shop_adapter::vars::get("idempotency_retention_hours")
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|h| *h > 0)
        .unwrap_or(DEFAULT_HOURS)
        * 3_600_000
}

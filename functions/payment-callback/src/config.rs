//! The webhook's settings, from component variables (see spin.toml).

use shop_adapter::Problem;
use shop_domain::payment::WebhookSecrets;

/// `webhook_secret` (required), `webhook_secret_previous` (optional, empty: none) and
/// `webhook_tolerance_seconds` (optional, empty: 300). A missing or unusable setting is our
/// fault, not the caller's: 500, so the provider keeps retrying until it is fixed.
pub fn secrets() -> Result<WebhookSecrets, Problem> {
    let current = shop_adapter::vars::get("webhook_secret")
        .map_err(|e| Problem::internal("webhook configuration", e))?;
    // Absent and empty mean the same: no rotation under way, default tolerance.
    let previous = shop_adapter::vars::get("webhook_secret_previous").unwrap_or_default();
    let tolerance = shop_adapter::vars::get("webhook_tolerance_seconds").unwrap_or_default();
    let tolerance = WebhookSecrets::parse_tolerance(&tolerance)
        .map_err(|e| Problem::internal("webhook configuration", e))?;
    WebhookSecrets::new(&current, Some(&previous), tolerance)
        .map_err(|e| Problem::internal("webhook configuration", e))
}

/// The Redis server of the event streams.
pub fn redis_url() -> anyhow::Result<String> {
    Ok(shop_adapter::vars::get("redis_url")?)
}

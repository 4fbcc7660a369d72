//! The `Idempotency-Key` header, as every route that takes one reads it.

// Fails with `Problem`, the one error a request ends with (large on 64-bit targets only).
#![allow(clippy::result_large_err)]

use shop_domain::idempotency::IdempotencyKey;
use spin_sdk::http::Request;

use crate::Problem;

/// `Idempotency-Key`: required, 1-255 visible ASCII characters; 400 naming the header otherwise.
/// `what` says what one key stands for ("order", "purchase").
pub fn required(req: &Request, what: &str) -> Result<IdempotencyKey, Problem> {
    let raw = req.header("idempotency-key").ok_or_else(|| {
        Problem::bad_request(
            "Idempotency-Key",
            format!("the Idempotency-Key header is required: a unique value per {what}, reused on retries"),
        )
    })?;
    let s = raw.as_str().ok_or_else(|| {
        Problem::bad_request("Idempotency-Key", "Idempotency-Key must be visible ASCII")
    })?;
    IdempotencyKey::parse(s).map_err(|e| Problem::bad_request("Idempotency-Key", e.to_string()))
}

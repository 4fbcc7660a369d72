//! Bearer-token checks for admin and internal routes. The expected token is a secret component
//! variable; the comparison takes the same time wherever the first difference is, so the token
//! cannot be guessed byte by byte from response times.

// `Problem` is the one error a request ends with, built at most once per request: boxing it
// would only add noise at every call site.
#![allow(clippy::result_large_err)]

use spin_sdk::http::Request;

use crate::Problem;

/// Accepts `Authorization: Bearer <expected>` (scheme case-insensitive). Anything else is 401.
/// An empty `expected` refuses every request: an unset secret never means "open".
pub fn require_bearer(req: &Request, expected: &str) -> Result<(), Problem> {
    let presented = req
        .header("authorization")
        .and_then(|v| v.as_str())
        .and_then(bearer_token);
    match presented {
        Some(token) if !expected.is_empty() && constant_time_eq(token, expected) => Ok(()),
        Some(_) => Err(unauthorized("the bearer token is not valid for this route")),
        None => Err(unauthorized(
            "this route needs an `Authorization: Bearer <admin token>` header",
        )),
    }
}

/// Accepts `Authorization: Bearer <internal token>`: the required secret variable
/// `internal_token`, which only the shop's own components (and the platform's scheduler) hold.
/// Every route that only another component should call (stock reservations, repair runs) starts
/// with this.
pub fn require_internal(req: &Request) -> Result<(), Problem> {
    let expected = crate::vars::get("internal_token")
        .map_err(|e| Problem::internal("read variable internal_token", e))?;
    require_bearer(req, &expected).map_err(|p| p.with("credential", "internal token"))
}

/// Accepts `Authorization: Bearer <admin token>` (the required secret variable `admin_token`).
pub fn require_admin(req: &Request) -> Result<(), Problem> {
    let expected = crate::vars::get("admin_token")
        .map_err(|e| Problem::internal("read variable admin_token", e))?;
    require_bearer(req, &expected)
}

/// The value of the `Authorization` header that internal calls carry.
pub fn internal_authorization() -> anyhow::Result<String> {
    Ok(format!("Bearer {}", crate::vars::get("internal_token")?))
}

fn unauthorized(detail: &str) -> Problem {
    Problem::new(401, "unauthorized", "Unauthorized", detail)
}

/// The token of an `Authorization` header value using the Bearer scheme.
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Equality whose running time depends only on the lengths.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_headers() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearer"), None);
    }

    #[test]
    fn compares_exactly() {
        assert!(constant_time_eq("secret", "secret"));
        assert!(!constant_time_eq("secret", "secreT"));
        assert!(!constant_time_eq("secret", "secret2"));
    }
}

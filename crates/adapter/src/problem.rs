//! RFC 9457 problem details: every client error leaves a function as `application/problem+json`
//! naming what was wrong, so callers never have to parse free text.

use serde::Serialize;
use spin_sdk::http::Response;

/// A problem+json body. `field` names the offending request field when there is one.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Extra members (e.g. the SKUs that are short), flattened into the body.
    #[serde(flatten, skip_serializing_if = "serde_json::Map::is_empty")]
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// Response headers the status needs (a 401's `WWW-Authenticate`); not part of the body.
    #[serde(skip)]
    pub headers: Vec<(String, String)>,
}

impl Problem {
    pub fn new(status: u16, slug: &str, title: &str, detail: impl Into<String>) -> Self {
        Problem {
            type_: format!("https://errors.spin-shop.dev/{slug}"),
            title: title.to_owned(),
            status,
            detail: detail.into(),
            field: None,
            extra: serde_json::Map::new(),
            headers: Vec::new(),
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn with(mut self, key: &str, value: impl Serialize) -> Self {
        let value = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
        self.extra.insert(key.to_owned(), value);
        self
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    pub fn bad_request(field: &str, detail: impl Into<String>) -> Self {
        Self::new(400, "bad-request", "Bad request", detail).with_field(field)
    }

    pub fn unprocessable(field: &str, detail: impl Into<String>) -> Self {
        Self::new(422, "validation", "Invalid field", detail).with_field(field)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(404, "not-found", "Not found", detail)
    }

    pub fn conflict(slug: &str, detail: impl Into<String>) -> Self {
        Self::new(409, slug, "Conflict", detail)
    }

    /// A failure of ours or of a dependency. The detail is logged, not leaked.
    pub fn internal(context: &str, err: impl std::fmt::Display) -> Self {
        eprintln!("internal error: {context}: {err}");
        Self::new(500, "internal", "Internal error", context.to_owned())
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(503, "unavailable", "Service unavailable", detail)
    }

    pub fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut resp = Response::builder()
            .status(self.status)
            .header("content-type", "application/problem+json")
            .body(body)
            .build();
        for (name, value) in self.headers {
            resp.set_header(name, value);
        }
        resp
    }
}

impl From<Problem> for Response {
    fn from(p: Problem) -> Response {
        p.into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_field_and_extras() {
        let p = Problem::conflict("insufficient-stock", "short").with("skus", ["A", "B"]);
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["status"], 409);
        assert_eq!(v["skus"], serde_json::json!(["A", "B"]));
        assert!(v.get("field").is_none());
        let v = serde_json::to_value(Problem::bad_request("items", "empty")).unwrap();
        assert_eq!(v["field"], "items");
    }
}

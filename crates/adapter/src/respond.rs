//! JSON success responses.

use serde::Serialize;
use spin_sdk::http::Response;

use crate::Problem;

/// `status` with `body` as `application/json`.
pub fn json(status: u16, body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(bytes)
            .build(),
        Err(e) => Problem::internal("serialize response", e).into_response(),
    }
}

/// Result alias for handlers: the error side is already a client-facing problem.
pub type HandlerResult = Result<Response, Problem>;

/// Collapses a handler result into the response to send.
pub fn finish(result: HandlerResult) -> Response {
    result.unwrap_or_else(Problem::into_response)
}

/// 405 with the `Allow` header RFC 9110 asks for.
pub fn method_not_allowed(allow: &str) -> Response {
    let mut resp = Problem::new(
        405,
        "method-not-allowed",
        "Method not allowed",
        format!("this route accepts {allow}"),
    )
    .into_response();
    resp.set_header("allow", allow);
    resp
}

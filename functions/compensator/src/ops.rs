//! Operator routes (admin token): the state of every outbox (dead letters and their replay:
//! `crate::dead_letters`).
//!
//! - `GET /api/ops/outbox`: per context, counts by delivery state and the oldest undelivered row.

use serde_json::json;
use shop_adapter::outbox;
use shop_adapter::respond::{json, HandlerResult};
use shop_adapter::Problem;
use spin_sdk::http::{Request, Response};
use spin_sdk::sqlite::Connection;

use crate::run::has_table;
use crate::LABELS;

/// A context's database, `None` when it has no outbox yet (nothing was ever written).
pub(crate) fn open(label: &str) -> Result<Option<Connection>, Problem> {
    let conn = Connection::open(label)
        .map_err(|e| Problem::unavailable(format!("database {label}: {e}")))?;
    match has_table(&conn, "outbox") {
        Ok(true) => Ok(Some(conn)),
        Ok(false) => Ok(None),
        Err(e) => Err(Problem::unavailable(format!("database {label}: {e}"))),
    }
}

pub(crate) fn failed(label: &str, e: anyhow::Error) -> Problem {
    Problem::unavailable(format!("database {label}: {e:#}"))
}

pub fn outbox(req: &Request) -> HandlerResult {
    crate::require_admin(req)?;
    let now = shop_adapter::ids::now_ms();
    let mut contexts = serde_json::Map::new();
    for label in LABELS {
        let Some(conn) = open(label)? else {
            contexts.insert(label.to_owned(), json!(null));
            continue;
        };
        let stats = outbox::stats(&conn).map_err(|e| failed(label, e))?;
        let age_ms = stats
            .oldest_pending_created_at
            .as_deref()
            .and_then(|t| shop_domain::timestamp::Timestamp::parse_rfc3339(t).ok())
            .map(|t| (now - t.millis()).max(0));
        let mut v = serde_json::to_value(&stats).unwrap_or_default();
        v["oldest_pending_age_ms"] = json!(age_ms);
        contexts.insert(label.to_owned(), v);
    }
    Ok(json(200, &json!({ "contexts": contexts })))
}

/// 404 for unknown paths, 405 with `Allow` for known ones.
pub fn no_route(req: &Request) -> Response {
    let path = req.path();
    let allow = match path {
        "/api/health/compensator" | "/api/ops/outbox" | "/api/ops/dead-letters" => Some("GET"),
        "/api/ops/streams" => Some("GET"),
        "/api/compensator/run" => Some("POST"),
        p if p.starts_with("/api/ops/dead-letters/") && p.ends_with("/replay") => Some("POST"),
        _ => None,
    };
    match allow {
        Some(allow) => shop_adapter::respond::method_not_allowed(allow),
        None => Problem::not_found(format!("no route for {path}")).into_response(),
    }
}

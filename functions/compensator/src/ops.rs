//! Operator routes (admin token): the state of every outbox (dead letters and their replay:
//! `crate::dead_letters`).
//!
//! - `GET /api/ops/outbox`: per context, counts by delivery state and the oldest undelivered row
//!   (the order context's summed over its shards, with each shard's under `shards`).

use serde_json::{json, Value};
use shop_adapter::outbox;
use shop_adapter::respond::{json, HandlerResult};
use shop_adapter::Problem;
use spin_sdk::http::{Request, Response};
use spin_sdk::sqlite::Connection;

use crate::run::has_table;

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

/// `GET /api/ops/outbox`: per context, the outbox's counts and oldest undelivered row; the order
/// context's are summed over its shards, each shard's own under `shards` (`orders-shard0`, ...).
pub fn outbox(req: &Request) -> HandlerResult {
    crate::require_admin(req)?;
    let now = shop_adapter::ids::now_ms();
    let mut contexts = serde_json::Map::new();
    let mut shards = Vec::new();
    for db in crate::all_databases()? {
        let label = db.label;
        let stats = match open(&label)? {
            Some(conn) => Some(outbox::stats(&conn).map_err(|e| failed(&label, e))?),
            None => None,
        };
        match db.context == label {
            true => contexts.insert(label, stats.map_or(json!(null), |s| view(&s, now))),
            false => {
                shards.push((label, stats));
                None
            }
        };
    }
    contexts.insert("orders".to_owned(), summed(&shards, now));
    Ok(json(200, &json!({ "contexts": contexts })))
}

/// The shards' counts added up, with each shard's under `shards`; null while no shard has an
/// outbox yet (nothing was ever written).
fn summed(shards: &[(String, Option<outbox::Stats>)], now: i64) -> Value {
    let mut each = serde_json::Map::new();
    let mut total: Option<outbox::Stats> = None;
    for (label, stats) in shards {
        each.insert(
            label.clone(),
            stats.as_ref().map_or(json!(null), |s| view(s, now)),
        );
        if let Some(s) = stats {
            total = Some(add(total.as_ref(), s));
        }
    }
    let Some(total) = total else {
        return json!(null);
    };
    let mut v = view(&total, now);
    v["shards"] = Value::Object(each);
    v
}

/// The counts of two outboxes together (the oldest undelivered row is the older one).
fn add(a: Option<&outbox::Stats>, b: &outbox::Stats) -> outbox::Stats {
    let a_oldest = a.and_then(|a| a.oldest_pending_created_at.clone());
    let oldest = [a_oldest, b.oldest_pending_created_at.clone()]
        .into_iter()
        .flatten()
        .min();
    let sum = |f: fn(&outbox::Stats) -> i64| a.map_or(0, f) + f(b);
    outbox::Stats {
        pending: sum(|s| s.pending),
        published: sum(|s| s.published),
        dead: sum(|s| s.dead),
        oldest_pending_created_at: oldest,
    }
}

/// One outbox's counts as the route shows them, with the age of its oldest undelivered row.
fn view(stats: &outbox::Stats, now: i64) -> Value {
    let age_ms = stats
        .oldest_pending_created_at
        .as_deref()
        .and_then(|t| shop_domain::timestamp::Timestamp::parse_rfc3339(t).ok())
        .map(|t| (now - t.millis()).max(0));
    let mut v = serde_json::to_value(stats).unwrap_or_default();
    v["oldest_pending_age_ms"] = json!(age_ms);
    v
}

/// 404 for unknown paths, 405 with `Allow` for known ones.
pub fn no_route(req: &Request) -> Response {
    let path = req.path();
    let allow = match path {
        "/api/health/compensator" | "/api/ops/outbox" | "/api/ops/dead-letters" => Some("GET"),
        "/api/ops/streams" | "/api/ops/flash-sales" => Some("GET"),
        "/api/compensator/run" => Some("POST"),
        p if p.starts_with("/api/ops/dead-letters/") && p.ends_with("/replay") => Some("POST"),
        _ => None,
    };
    match allow {
        Some(allow) => shop_adapter::respond::method_not_allowed(allow),
        None => Problem::not_found(format!("no route for {path}")).into_response(),
    }
}

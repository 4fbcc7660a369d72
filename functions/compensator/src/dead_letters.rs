//! Operator routes over every dead letter (admin token), outbox and receiver alike:
//!
//! - `GET /api/ops/dead-letters`: the outbox rows of every context that failed too often to
//!   send (`source: "outbox"`, named by their message id) and the messages every receiver failed
//!   too often to apply (`source: "receiver"`, named `rcv:<topic>:<group>:<entry id>`: the same
//!   message may be dead in an outbox and in a receiver, so the id says which one), with each
//!   receiver dead-letter stream's length.
//! - `POST /api/ops/dead-letters/{id}/replay`: an outbox row is put back in line (due now,
//!   attempts reset); a receiver's is appended to its topic's stream again and leaves the dead
//!   letters, in one step. Receivers drop a message they already applied (inbox, idempotent
//!   scripts), so a replay never applies anything twice. A second replay of the same id is 404.
//!
//! The compensator run drops receiver dead letters older than `dead_letter_retention_hours`
//! ([`purge`]).

use serde_json::json;
use shop_adapter::dead_letter::{self, DeadLetterId, Source};
use shop_adapter::outbox;
use shop_adapter::respond::{json, HandlerResult};
use shop_adapter::Problem;
use spin_sdk::http::Request;

use crate::ops::{failed, open};

/// Dead letters listed per context (outbox) and per dead-letter stream (receivers) at most.
const LIST_LIMIT: u32 = 100;

/// Receiver dead letters are kept this long by default (the variable's default in spin.toml).
const DEFAULT_RETENTION_HOURS: i64 = 24 * 30;

pub fn list(req: &Request) -> HandlerResult {
    crate::require_admin(req)?;
    let mut all = Vec::new();
    for db in crate::all_databases()? {
        let label = db.label.as_str();
        if let Some(conn) = open(label)? {
            let rows = outbox::dead_letters(&conn, i64::from(LIST_LIMIT));
            for d in rows.map_err(|e| failed(label, e))? {
                let mut v = serde_json::to_value(&d).unwrap_or_default();
                v["id"] = json!(d.message_id);
                v["source"] = json!(Source::Outbox);
                v["context"] = json!(db.context);
                v["database"] = json!(label);
                all.push(v);
            }
        }
    }
    // Outbox dead letters pile up precisely while Redis is unreachable: they are listed even
    // then, with a word on why the receivers' are missing.
    let receivers = redis().and_then(|c| dead_letter::list(&c, LIST_LIMIT).map_err(redis_failed));
    let (streams, unavailable) = match receivers {
        Ok(listing) => {
            for d in &listing.dead_letters {
                let mut v = serde_json::to_value(d).unwrap_or_default();
                v["source"] = json!(Source::Receiver);
                all.push(v);
            }
            (json!(listing.streams), None)
        }
        Err(p) => (json!([]), Some(p.detail)),
    };
    let mut body = json!({ "dead_letters": all, "receivers": streams });
    if let Some(why) = unavailable {
        body["receivers_unavailable"] = json!(why);
    }
    Ok(json(200, &body))
}

pub fn replay(req: &Request, id: &str) -> HandlerResult {
    crate::require_admin(req)?;
    if let Some(rid) = DeadLetterId::parse(id) {
        let entry = dead_letter::replay(&redis()?, &rid).map_err(redis_failed)?;
        let entry = entry.ok_or_else(|| unknown(id))?;
        let body = json!({"replayed": id, "topic": rid.topic, "group": rid.group, "entry": entry});
        return Ok(json(200, &body));
    }
    for db in crate::all_databases()? {
        let label = db.label.as_str();
        if let Some(conn) = open(label)? {
            if outbox::replay(&conn, id).map_err(|e| failed(label, e))? {
                let body = json!({ "replayed": id, "context": db.context, "database": label });
                return Ok(json(200, &body));
            }
        }
    }
    Err(unknown(id))
}

/// Deletes receiver dead letters past the retention variable; returns how many.
pub fn purge(redis_url: &str, now_ms: i64) -> anyhow::Result<i64> {
    let hours = crate::run::hours("dead_letter_retention_hours", DEFAULT_RETENTION_HOURS);
    let conn = spin_sdk::redis::Connection::open(redis_url)?;
    dead_letter::purge(&conn, now_ms - hours * 3_600_000)
}

fn unknown(id: &str) -> Problem {
    Problem::not_found(format!("no dead letter with id {id:?}"))
}

fn redis() -> Result<spin_sdk::redis::Connection, Problem> {
    let url = shop_adapter::vars::get("redis_url")
        .map_err(|e| Problem::internal("read variable redis_url", e))?;
    spin_sdk::redis::Connection::open(&url).map_err(redis_failed)
}

fn redis_failed(e: impl std::fmt::Display) -> Problem {
    eprintln!("compensator: dead letters: redis: {e:#}");
    Problem::unavailable("the event streams are unavailable, retry later")
}

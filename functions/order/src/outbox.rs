//! Appending to the transactional outbox. Always called inside the transaction that makes the
//! change the message announces.

use spin_sdk::sqlite::Connection;

use crate::db::{int, text};
use crate::ids;

/// One message to append.
pub struct Message<'a> {
    pub kind: &'a str,
    pub aggregate_id: &'a str,
    pub payload: &'a serde_json::Value,
    pub trace_id: Option<&'a str>,
    pub now_ms: i64,
}

/// Inserts `msg` with the next sequence number of its aggregate; returns the message id.
pub fn append(conn: &Connection, msg: &Message<'_>) -> anyhow::Result<String> {
    let message_id = ids::random_id("msg_");
    let next = conn.execute(
        "SELECT COALESCE(MAX(seq), 0) + 1 FROM outbox WHERE aggregate_id = ?",
        &[text(msg.aggregate_id)],
    )?;
    let seq = next.rows.first().and_then(|r| r.get::<i64>(0)).unwrap_or(1);
    conn.execute(
        "INSERT INTO outbox (message_id, type, aggregate_id, seq, payload, trace_id, created_at, published_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
        &[
            text(&message_id),
            text(msg.kind),
            text(msg.aggregate_id),
            int(seq),
            text(serde_json::to_string(msg.payload)?),
            shop_adapter::sqlite::text_or_null(msg.trace_id),
            text(ids::rfc3339(msg.now_ms)),
        ],
    )?;
    Ok(message_id)
}

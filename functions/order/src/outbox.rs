//! Appending to the transactional outbox. Always called inside the transaction that makes the
//! change the message announces.

use spin_sdk::sqlite::Connection;

use crate::db::{col_i64, col_opt_str, col_str, int, text};
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

/// What one relay pass did.
pub struct Relayed {
    pub published: u64,
    pub unpublished: i64,
}

/// Publishes unpublished messages, oldest first, to the Redis channel of the `events_channel`
/// variable, and stamps each one's `published_at` after the broker took it.
///
/// At-least-once: a crash between PUBLISH and the stamp re-sends that message on the next pass,
/// so consumers drop duplicates by `message_id` (and order by `seq`). A failed PUBLISH stops the
/// pass, so a later message of an aggregate is never delivered before an earlier one; the next
/// tick retries. The stamp is conditional (`published_at IS NULL`), so two relays running at
/// once never count one message twice.
pub fn relay(conn: &Connection, batch: i64, now_ms: i64) -> anyhow::Result<Relayed> {
    let rows = conn.execute(
        "SELECT message_id, type, aggregate_id, seq, payload, trace_id, created_at FROM outbox
         WHERE published_at IS NULL ORDER BY created_at, rowid LIMIT ?",
        &[int(batch)],
    )?;
    let mut published = 0;
    if !rows.rows.is_empty() {
        let redis = spin_sdk::redis::Connection::open(&spin_sdk::variables::get("redis_url")?)?;
        let channel = spin_sdk::variables::get("events_channel")?;
        for row in &rows.rows {
            let message_id = col_str(row, 0);
            let payload: serde_json::Value =
                serde_json::from_str(&col_str(row, 4)).unwrap_or_default();
            let envelope = serde_json::json!({
                "message_id": message_id,
                "type": col_str(row, 1),
                "aggregate_id": col_str(row, 2),
                "seq": col_i64(row, 3),
                "payload": payload,
                "trace_id": col_opt_str(row, 5),
                "created_at": col_str(row, 6),
            });
            redis.publish(&channel, &serde_json::to_vec(&envelope)?)?;
            conn.execute(
                "UPDATE outbox SET published_at = ? WHERE message_id = ? AND published_at IS NULL",
                &[text(ids::rfc3339(now_ms)), text(&message_id)],
            )?;
            if shop_adapter::sqlite::changes(conn)? == 1 {
                published += 1;
            }
        }
    }
    let left = conn.execute(
        "SELECT COUNT(*) FROM outbox WHERE published_at IS NULL",
        &[],
    )?;
    let unpublished = left.rows.first().map(|r| col_i64(r, 0)).unwrap_or(0);
    Ok(Relayed {
        published,
        unpublished,
    })
}

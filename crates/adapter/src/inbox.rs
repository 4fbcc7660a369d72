//! The inbox of a receiving context: an effect and the record that its message was applied are
//! one transaction, so a message delivered twice is applied once.

use spin_sdk::sqlite::{Connection, Value};

use crate::sqlite::changes;

/// The inbox table; a receiving context lists it among its migrations.
pub const MIGRATION_SQL: &str = include_str!("../sql/inbox.sql");

/// Records `message_id` as applied. `true` the first time; `false` when it was applied before
/// (then the caller must skip the effect). Call it inside the effect's transaction.
pub fn record(
    conn: &Connection,
    message_id: &str,
    kind: &str,
    now_ms: i64,
) -> anyhow::Result<bool> {
    conn.execute(
        "INSERT OR IGNORE INTO inbox (message_id, kind, received_ms) VALUES (?, ?, ?)",
        &[
            Value::Text(message_id.to_owned()),
            Value::Text(kind.to_owned()),
            Value::Integer(now_ms),
        ],
    )?;
    Ok(changes(conn)? == 1)
}

/// Deletes inbox rows received before `before_ms`; returns how many. Keep them far longer than
/// any redelivery can come (the retention variable), or a very late duplicate applies again.
pub fn purge(conn: &Connection, before_ms: i64) -> anyhow::Result<i64> {
    conn.execute(
        "DELETE FROM inbox WHERE received_ms < ?",
        &[Value::Integer(before_ms)],
    )?;
    changes(conn)
}

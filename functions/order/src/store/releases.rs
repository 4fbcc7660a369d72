//! Stock reservations the order context owes back: recorded in `pending_releases` (retried over
//! service chaining by the HTTP repair route) and announced as `ReservationReleaseOwed` on the
//! order topic (the stock context's receiver releases it without any chaining), in the same
//! transaction as the decision to give the reservation up.

use serde_json::json;
use spin_sdk::sqlite::Connection;

use crate::db::{int, text};
use crate::outbox;

/// Records that `reservation_id` must be released, inside the caller's transaction: a
/// `pending_releases` row (retried over service chaining by this route) and a
/// `ReservationReleaseOwed` message (the stock context releases it when it arrives, with no
/// chaining). Returns the message id.
pub fn owe(
    conn: &Connection,
    reservation_id: &str,
    order_id: Option<&str>,
    reason: &str,
    now: i64,
) -> anyhow::Result<String> {
    conn.execute(
        "INSERT OR IGNORE INTO pending_releases (reservation_id, order_id, reason, created_ms)
         VALUES (?, ?, ?, ?)",
        &[
            text(reservation_id),
            shop_adapter::sqlite::text_or_null(order_id),
            text(reason),
            int(now),
        ],
    )?;
    let payload = json!({
        "reservation_id": reservation_id,
        "order_id": order_id,
        "reason": reason,
    });
    outbox::append(
        conn,
        &outbox::Message {
            kind: "ReservationReleaseOwed",
            aggregate_id: reservation_id,
            payload: &payload,
            trace_id: None,
            now_ms: now,
        },
    )
}

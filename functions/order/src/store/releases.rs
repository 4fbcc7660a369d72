//! Stock reservations the order context owes back (`pending_releases`): recorded in the
//! transaction of the decision to give a reservation up, closed once the stock component
//! released it. Where it is owed without another message releasing it, it is also announced as
//! `ReservationReleaseOwed` on the order topic (the stock context's receiver releases it with no
//! service chaining).

use shop_domain::messages::{OrderEvent, ReservationReleaseOwed};
use shop_domain::reservation::ReservationId;
use spin_sdk::sqlite::Connection;

use crate::db::{col_i64, col_str, int, text};
use crate::store::outbox;

/// Why a reservation is given back (the row's `reason`: the contract's, as its `as_str`).
pub use shop_domain::messages::ReleaseReason as Reason;

/// Records that `reservation_id` must be released, inside the caller's transaction (a second
/// record of the same reservation changes nothing).
pub fn record(
    conn: &Connection,
    reservation_id: &str,
    order_id: Option<&str>,
    reason: Reason,
    now: i64,
) -> anyhow::Result<()> {
    conn.execute(
        "INSERT OR IGNORE INTO pending_releases (reservation_id, order_id, reason, created_ms)
         VALUES (?, ?, ?, ?)",
        &[
            text(reservation_id),
            shop_adapter::sqlite::text_or_null(order_id),
            text(reason.as_str()),
            int(now),
        ],
    )?;
    Ok(())
}

/// [`record`] plus a `ReservationReleaseOwed` message, for a release no other message causes.
/// Returns the message id.
pub fn owe(
    conn: &Connection,
    reservation_id: &str,
    order_id: Option<&str>,
    reason: Reason,
    now: i64,
) -> anyhow::Result<String> {
    record(conn, reservation_id, order_id, reason, now)?;
    let owed = OrderEvent::ReservationReleaseOwed(ReservationReleaseOwed {
        reservation_id: ReservationId::parse(reservation_id)
            .map_err(|e| anyhow::anyhow!("reservation id {reservation_id:?}: {e}"))?,
        order_id: order_id.map(str::to_owned),
        reason,
    });
    let message = outbox::Message::new(&owed, reservation_id, None, now)?;
    outbox::append(conn, &message)
}

/// Whether a release of `reservation_id` is recorded and not done yet.
pub fn is_open(conn: &Connection, reservation_id: &str) -> anyhow::Result<bool> {
    let rows = conn.execute(
        "SELECT 1 FROM pending_releases WHERE reservation_id = ? AND released_ms IS NULL",
        &[text(reservation_id)],
    )?;
    Ok(!rows.rows.is_empty())
}

/// The stock component released it.
pub fn close(conn: &Connection, reservation_id: &str, now: i64) -> anyhow::Result<()> {
    conn.execute(
        "UPDATE pending_releases SET released_ms = ? WHERE reservation_id = ?",
        &[int(now), text(reservation_id)],
    )?;
    Ok(())
}

/// Another release call failed; the row stays open.
pub fn failed_again(conn: &Connection, reservation_id: &str, error: &str) -> anyhow::Result<()> {
    conn.execute(
        "UPDATE pending_releases SET attempts = attempts + 1, last_error = ? WHERE reservation_id = ?",
        &[text(error), text(reservation_id)],
    )?;
    Ok(())
}

/// Up to `limit` open releases, oldest first.
pub fn open(conn: &Connection, limit: i64) -> anyhow::Result<Vec<String>> {
    let rows = conn.execute(
        "SELECT reservation_id FROM pending_releases WHERE released_ms IS NULL
         ORDER BY created_ms LIMIT ?",
        &[int(limit)],
    )?;
    Ok(rows.rows.iter().map(|r| col_str(r, 0)).collect())
}

/// How many releases are still open.
pub fn count_open(conn: &Connection) -> anyhow::Result<i64> {
    let rows = conn.execute(
        "SELECT COUNT(*) FROM pending_releases WHERE released_ms IS NULL",
        &[],
    )?;
    Ok(rows.rows.first().map(|r| col_i64(r, 0)).unwrap_or(0))
}

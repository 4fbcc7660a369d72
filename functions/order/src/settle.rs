//! Giving a recorded reservation back at the stock component now, over service chaining, and
//! closing its `pending_releases` row. Shared by the failed order write, cancel and the repair
//! route; whatever fails here stays open for the next repair.

use spin_sdk::sqlite::Connection;

use crate::store::releases;
use crate::{ids, stock};

/// What became of one release.
pub enum Released {
    /// Released and its row closed.
    Done,
    /// Released at the stock component, but the row could not be closed (the next repair
    /// releases it again, which is idempotent).
    NotClosed(anyhow::Error),
    /// The stock component did not release it; the failure is counted on the row.
    Failed,
}

pub async fn release(
    conn: &Connection,
    reservation_id: &str,
    traceparent: Option<&str>,
) -> Released {
    match stock::release(reservation_id, traceparent).await {
        Ok(()) => match releases::close(conn, reservation_id, ids::now_ms()) {
            Ok(()) => Released::Done,
            Err(e) => Released::NotClosed(e),
        },
        Err(e) => {
            eprintln!("order: releasing {reservation_id} failed, left to the repair: {e}");
            let _ = releases::failed_again(conn, reservation_id, &e.to_string());
            Released::Failed
        }
    }
}

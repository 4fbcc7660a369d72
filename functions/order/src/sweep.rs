//! The order context's periodic repairs, run by the `order-events` receiver on every wake-up and
//! by `POST /api/orders/compensate`: abandoned Idempotency-Key claims are given up and unpaid
//! orders past their deadline expire. Each item is its own transaction, guarded (claim token,
//! order version) so a concurrent request or a second sweep wins cleanly.

use shop_adapter::sqlite::Tx;
use shop_domain::order::{OrderCommand, Outcome};
use spin_sdk::sqlite::Connection;

use crate::store::claims;
use crate::store::orders::{self, Event};
use crate::store::releases::{self, Reason};

/// Far above any request's duration and the lease a client retry needs to retake a claim, and
/// below the reservation TTL (the payment window), so the release is still worth doing.
pub const ABANDON_AFTER_MS: i64 = 10 * 60 * 1000;

/// Rows handled per call; the next tick takes the rest.
pub const BATCH: i64 = 50;

/// Returns the ids of the `ReservationReleaseOwed` messages it wrote (one per claim given
/// up): the stock context releases the reservation when the message reaches it.
pub fn abandon_claims(conn: &Connection, now: i64) -> anyhow::Result<Vec<String>> {
    let mut written = Vec::new();
    for stale in claims::abandoned(conn, now - ABANDON_AFTER_MS, BATCH)? {
        let tx = Tx::begin(conn)?;
        if !claims::fail(conn, &stale.key, &stale.token, stale.attempt + 1, now)? {
            tx.rollback(); // a client retry retook it meanwhile: it owns the reservation
            continue;
        }
        let reservation_id = stale.key.reservation_id(stale.attempt);
        written.push(releases::owe(
            conn,
            &reservation_id,
            None,
            Reason::ClaimAbandoned,
            now,
        )?);
        tx.commit()?;
    }
    Ok(written)
}

/// Returns the ids of the `OrderExpired` messages it wrote (one per expired order).
pub fn expire_orders(conn: &Connection, now: i64) -> anyhow::Result<Vec<String>> {
    let mut written = Vec::new();
    for order in orders::past_deadline(conn, now, BATCH)? {
        let Ok(Outcome::Changed(to)) = order.apply(OrderCommand::Expire) else {
            continue;
        };
        let tx = Tx::begin(conn)?;
        let Some(message_id) = orders::transition(conn, &order, to, &Event::Expired, None, now)?
        else {
            tx.rollback(); // changed meanwhile (paid, cancelled): not ours to expire
            continue;
        };
        written.push(message_id);
        // The OrderExpired message releases the reservation at the stock context; the row
        // lets this route retry it over service chaining too.
        let oid = Some(order.order_id.as_str());
        releases::record(conn, &order.reservation_id, oid, Reason::OrderExpired, now)?;
        tx.commit()?;
    }
    Ok(written)
}

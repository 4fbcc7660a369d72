//! The order context's periodic repairs, run by the `order-events` receiver on every wake-up and
//! by `POST /api/orders/compensate`: abandoned Idempotency-Key claims are given up and unpaid
//! orders past their deadline expire. Each item is its own transaction, guarded (claim token,
//! order version) so a concurrent request or a second sweep wins cleanly.

use shop_adapter::sqlite::Tx;
use shop_domain::order::{OrderCommand, Outcome};
use spin_sdk::sqlite::Connection;

use crate::store::orders::{self, Event};
use crate::store::releases::{self, Reason};
use crate::store::{claims, leases};

/// Far above any request's duration and the lease a client retry needs to retake a claim, and
/// below the reservation TTL (the payment window), so the release is still worth doing.
pub const ABANDON_AFTER_MS: i64 = 10 * 60 * 1000;

/// Rows handled per call; the next tick takes the rest.
pub const BATCH: i64 = 50;

/// Returns the ids of the `ReservationReleaseOwed` messages it wrote (one per claim given
/// up): the stock context releases the reservation when the message reaches it. Stale open
/// leases first (a request that died between reserving and writing), then `in-progress` rows
/// older versions wrote.
pub fn abandon_claims(conn: &Connection, now: i64) -> anyhow::Result<Vec<String>> {
    let mut written = abandon_leases(conn, now)?;
    for stale in claims::abandoned(conn, now - ABANDON_AFTER_MS, BATCH)? {
        let tx = Tx::begin(conn)?;
        if !claims::give_up(conn, &stale.key, &stale.token, stale.attempt + 1, now)? {
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

/// Each stale open lease in its own transaction (guarded by the claim row, so a second sweep or
/// the holder's own late write wins cleanly), then forgotten.
fn abandon_leases(conn: &Connection, now: i64) -> anyhow::Result<Vec<String>> {
    let mut written = Vec::new();
    for lease in leases::stale(now - ABANDON_AFTER_MS, BATCH)? {
        let tx = Tx::begin(conn)?;
        if claims::abandon(conn, &lease, now)? {
            let reservation_id = lease.key.reservation_id(lease.attempt);
            let reason = Reason::ClaimAbandoned;
            written.push(releases::owe(conn, &reservation_id, None, reason, now)?);
        }
        tx.commit()?;
        // Forgotten after the commit: a crash in between leaves it to the next sweep, which
        // finds the claim moved past its attempt and owes nothing again (except when an order
        // was written with another attempt: then the release is owed a second time, which the
        // stock context's idempotent release and `pending_releases` absorb).
        leases::forget(&lease)?;
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

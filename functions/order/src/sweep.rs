//! The order context's periodic repairs, run by the `order-events` receiver on every wake-up and
//! by `POST /api/orders/compensate`: abandoned Idempotency-Key claims are given up and unpaid
//! orders past their deadline expire, in every shard. Each item is its own transaction in the
//! shard that holds it, guarded (claim token, order version) so a concurrent request or a second
//! sweep wins cleanly.

use shop_adapter::sqlite::Tx;
use shop_domain::order::{OrderCommand, Outcome};
use spin_sdk::sqlite::Connection;

use crate::db::Shards;
use crate::store::orders::{self, Event};
use crate::store::releases::{self, Reason};
use crate::store::{claims, leases};

/// Far above any request's duration and the lease a client retry needs to retake a claim, and
/// below the reservation TTL (the payment window), so the release is still worth doing.
pub const ABANDON_AFTER_MS: i64 = 10 * 60 * 1000;

/// Rows handled per call; the next tick takes the rest.
pub const BATCH: i64 = 50;

/// What one sweep over every shard wrote: per shard (by index), the ids of the outbox messages
/// of the claims it gave up (`ReservationReleaseOwed`) and of the orders it expired
/// (`OrderExpired`), to be sent from that shard.
pub struct Swept {
    pub abandoned: Vec<Vec<String>>,
    pub expired: Vec<Vec<String>>,
}

impl Swept {
    pub fn abandoned_count(&self) -> u64 {
        self.abandoned.iter().map(Vec::len).sum::<usize>() as u64
    }

    pub fn expired_count(&self) -> u64 {
        self.expired.iter().map(Vec::len).sum::<usize>() as u64
    }

    /// Adds what shard `i` wrote to `written`.
    pub fn add_to(&self, written: &mut [Vec<String>]) {
        for (i, w) in written.iter_mut().enumerate() {
            w.extend(self.abandoned[i].iter().cloned());
            w.extend(self.expired[i].iter().cloned());
        }
    }
}

/// Gives up abandoned claims and expires unpaid orders past their deadline, in every shard.
pub fn sweep(shards: &Shards, now: i64) -> anyhow::Result<Swept> {
    let mut abandoned = abandon_leases(shards, now)?;
    let mut expired = Vec::with_capacity(abandoned.len());
    for (i, conn) in shards.iter().enumerate() {
        abandoned[i].extend(abandon_unleased(conn, now)?);
        expired.push(expire_orders(conn, now)?);
    }
    Ok(Swept { abandoned, expired })
}

/// `in-progress` rows older versions wrote (before the Redis lease), given up in this shard;
/// the ids of the `ReservationReleaseOwed` messages it wrote (the stock context releases the
/// reservation when the message reaches it).
fn abandon_unleased(conn: &Connection, now: i64) -> anyhow::Result<Vec<String>> {
    let mut written = Vec::new();
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

/// Each stale open lease (a request that died between reserving and writing) in its own
/// transaction in its customer's shard (guarded by the claim row, so a second sweep or the
/// holder's own late write wins cleanly), then forgotten; per shard, the messages written.
fn abandon_leases(shards: &Shards, now: i64) -> anyhow::Result<Vec<Vec<String>>> {
    let mut written = vec![Vec::new(); shards.count.get() as usize];
    for lease in leases::stale(now - ABANDON_AFTER_MS, BATCH)? {
        // The lease names its customer: the claim lives in that customer's shard.
        let shard = shards.count.shard_of(lease.key.owner_str()).get() as usize;
        let conn = shards.of(lease.key.owner_str());
        let tx = Tx::begin(conn)?;
        if claims::abandon(conn, &lease, now)? {
            let reservation_id = lease.key.reservation_id(lease.attempt);
            let reason = Reason::ClaimAbandoned;
            written[shard].push(releases::owe(conn, &reservation_id, None, reason, now)?);
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

/// Returns the ids of the `OrderExpired` messages it wrote in this shard (one per expired order).
fn expire_orders(conn: &Connection, now: i64) -> anyhow::Result<Vec<String>> {
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

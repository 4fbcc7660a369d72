//! `POST /api/orders/compensate`: finish what a crash or a failed call left half-done in the
//! order component, over HTTP (an operator's or a scheduler's direct repair; the event path does
//! the same without it). Needs the internal token: it only does what is owed anyway,
//! idempotently, but nobody outside should be able to make the shop run repair batches.
//!
//! 1. Abandoned claims: an `in-progress` Idempotency-Key claim older than [`ABANDON_AFTER_MS`]
//!    belongs to a request that died between claiming and writing, and whose client did not
//!    retry. The claim moves to `failed` with the next attempt (guarded by its claim token, so a
//!    client retry that retook it first wins) and its reservation is recorded as owed. A later
//!    retry of that request reserves afresh under the next attempt's id.
//! 2. Expired orders: a PENDING_PAYMENT order past `expires_at` becomes EXPIRED (state machine
//!    `Expire`, `WHERE version = <read version>`) with an `OrderExpired` outbox message and its
//!    reservation recorded as owed, in one transaction. Its stock reservation expires at the same
//!    time, so the order could not be fulfilled any more.
//! 3. Owed releases: every open `pending_releases` row (a cancel or a failed order write whose
//!    release call failed, steps 1 and 2) is released at the stock component (idempotent; an
//!    unknown reservation counts as released) and closed.
//! 4. Outbox relay: unpublished outbox messages (the ones this pass just wrote included) are
//!    published to the order events channel, oldest first, at least once ([`outbox::relay`]).

use serde::Serialize;
use shop_adapter::respond::{json, HandlerResult};
use shop_adapter::sqlite::{changes, Tx};
use shop_domain::idempotency::IdempotencyKey;
use spin_sdk::http::Request;
use spin_sdk::sqlite::Connection;

use serde_json::json;
use shop_domain::order::{OrderCommand, OrderState, OrderStatus, Outcome};

use crate::db::{self, col_i64, col_str, int, text};
use crate::{ids, outbox, releases, stock};

/// Far above any request's duration and the lease a client retry needs to retake a claim, and
/// below the reservation TTL (the payment window), so the release is still worth doing.
pub const ABANDON_AFTER_MS: i64 = 10 * 60 * 1000;

/// Rows handled per call; the next tick takes the rest.
const BATCH: i64 = 50;

#[derive(Serialize)]
struct Report {
    abandoned_claims: u64,
    expired_orders: u64,
    released: u64,
    still_pending: i64,
    published: u64,
    unpublished: i64,
}

pub async fn handle(req: &Request) -> HandlerResult {
    shop_adapter::auth::require_internal(req)?;
    let tp = req
        .header("traceparent")
        .and_then(|v| v.as_str())
        .filter(|t| shop_domain::trace::trace_id(t).is_some())
        .map(str::to_owned);
    let conn = db::open()?;
    let now = ids::now_ms();
    let abandoned_claims =
        abandon_claims(&conn, now).map_err(|e| db::unavailable("abandon claims", e))?;
    let expired_orders =
        expire_orders(&conn, now).map_err(|e| db::unavailable("expire orders", e))?;
    outbox::publish(
        &conn,
        &[abandoned_claims.as_slice(), &expired_orders].concat(),
    );

    let open = conn
        .execute(
            "SELECT reservation_id FROM pending_releases WHERE released_ms IS NULL
             ORDER BY created_ms LIMIT ?",
            &[int(BATCH)],
        )
        .map_err(|e| db::unavailable("read pending releases", e))?;
    let mut released = 0;
    for row in &open.rows {
        let rid = col_str(row, 0);
        match stock::release(&rid, tp.as_deref()).await {
            Ok(()) => {
                conn.execute(
                    "UPDATE pending_releases SET released_ms = ? WHERE reservation_id = ?",
                    &[int(ids::now_ms()), text(&rid)],
                )
                .map_err(|e| db::unavailable("close pending release", e))?;
                released += 1;
            }
            Err(e) => {
                eprintln!("order: compensate: releasing {rid} failed again: {e}");
                let _ = conn.execute(
                    "UPDATE pending_releases SET attempts = attempts + 1, last_error = ?
                     WHERE reservation_id = ?",
                    &[text(e.to_string()), text(&rid)],
                );
            }
        }
    }
    let still = conn
        .execute(
            "SELECT COUNT(*) FROM pending_releases WHERE released_ms IS NULL",
            &[],
        )
        .map_err(|e| db::unavailable("count pending releases", e))?;
    let still_pending = still.rows.first().map(|r| col_i64(r, 0)).unwrap_or(0);
    let relayed = relay(&conn).map_err(|e| db::unavailable("relay outbox", e))?;
    Ok(json(
        200,
        &Report {
            abandoned_claims: abandoned_claims.len() as u64,
            expired_orders: expired_orders.len() as u64,
            released,
            still_pending,
            published: relayed.0,
            unpublished: relayed.1,
        },
    ))
}

/// Step 4: the shared relay over this database's outbox; (sent, still undelivered).
fn relay(conn: &Connection) -> anyhow::Result<(u64, i64)> {
    let url = spin_sdk::variables::get("redis_url")?;
    let opts = shop_adapter::outbox::RelayOptions::default();
    let report = shop_adapter::outbox::relay(conn, &url, &opts)?;
    let stats = shop_adapter::outbox::stats(conn)?;
    Ok((report.sent, stats.pending))
}

/// Step 1; returns the ids of the `ReservationReleaseOwed` messages it wrote (one per claim given
/// up): the stock context releases the reservation when the message reaches it.
pub fn abandon_claims(conn: &Connection, now: i64) -> anyhow::Result<Vec<String>> {
    let stale = conn.execute(
        "SELECT idem_key, attempt, claim_token FROM idempotency_keys
         WHERE state = 'in-progress' AND claimed_ms <= ? ORDER BY claimed_ms LIMIT ?",
        &[int(now - ABANDON_AFTER_MS), int(BATCH)],
    )?;
    let mut written = Vec::new();
    for row in &stale.rows {
        let (raw_key, attempt, token) = (col_str(row, 0), col_i64(row, 1), col_str(row, 2));
        let Ok(key) = IdempotencyKey::parse(&raw_key) else {
            continue;
        };
        let tx = Tx::begin(conn)?;
        conn.execute(
            "UPDATE idempotency_keys SET state = 'failed', attempt = ?, updated_ms = ?
             WHERE idem_key = ? AND claim_token = ? AND state = 'in-progress'",
            &[int(attempt + 1), int(now), text(&raw_key), text(&token)],
        )?;
        if changes(conn)? != 1 {
            tx.rollback(); // a client retry retook it meanwhile: it owns the reservation
            continue;
        }
        let reservation_id = key.reservation_id(attempt);
        written.push(releases::owe(
            conn,
            &reservation_id,
            None,
            "claim-abandoned",
            now,
        )?);
        tx.commit()?;
    }
    Ok(written)
}

/// Step 2; returns the ids of the `OrderExpired` messages it wrote (one per expired order).
pub fn expire_orders(conn: &Connection, now: i64) -> anyhow::Result<Vec<String>> {
    let due = conn.execute(
        "SELECT order_id, user_id, status, version, reservation_id FROM orders
         WHERE status = 'PENDING_PAYMENT' AND expires_ms <= ? ORDER BY expires_ms LIMIT ?",
        &[int(now), int(BATCH)],
    )?;
    let mut written = Vec::new();
    for row in &due.rows {
        let order_id = col_str(row, 0);
        let Some(status) = OrderStatus::parse(&col_str(row, 2)) else {
            continue;
        };
        let from = OrderState {
            status,
            version: col_i64(row, 3),
        };
        let Ok(Outcome::Changed(to)) = from.apply(OrderCommand::Expire) else {
            continue;
        };
        let reservation_id = col_str(row, 4);
        let tx = Tx::begin(conn)?;
        conn.execute(
            "UPDATE orders SET status = ?, version = ?, updated_ms = ? WHERE order_id = ? AND version = ?",
            &[
                text(to.status.as_str()),
                int(to.version),
                int(now),
                text(&order_id),
                int(from.version),
            ],
        )?;
        if changes(conn)? != 1 {
            tx.rollback(); // changed meanwhile (paid, cancelled): not ours to expire
            continue;
        }
        let payload = json!({
            "order_id": order_id,
            "user_id": col_str(row, 1),
            "status": to.status.as_str(),
            "previous_status": from.status.as_str(),
            "version": to.version,
            "reservation_id": reservation_id,
            "expired_at": ids::rfc3339(now),
        });
        written.push(outbox::append(
            conn,
            &outbox::Message {
                kind: "OrderExpired",
                aggregate_id: &order_id,
                payload: &payload,
                trace_id: None,
                now_ms: now,
            },
        )?);
        // The OrderExpired message releases the reservation at the stock context; the row
        // lets this route retry it over service chaining too.
        conn.execute(
            "INSERT OR IGNORE INTO pending_releases (reservation_id, order_id, reason, created_ms)
             VALUES (?, ?, 'order-expired', ?)",
            &[text(&reservation_id), text(&order_id), int(now)],
        )?;
        tx.commit()?;
    }
    Ok(written)
}

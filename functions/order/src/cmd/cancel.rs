//! `POST /api/orders/{order_id}/cancel`: PENDING_PAYMENT -> CANCELLED, releasing the stock.
//!
//! The state change, the `OrderCancelled` outbox message and a `pending_releases` row are one
//! transaction, written `WHERE version = <read version>`; only then is the reservation released
//! at the stock component. Releasing first would risk freed stock on an order that a concurrent
//! payment then marks PAID; this way the worst case is a committed cancel whose release call
//! failed, which the compensator finishes from `pending_releases`. Cancelling a cancelled order
//! is 200 again (and retries a release that is still pending); once PAID, SHIPPED, COMPLETED or
//! EXPIRED it is 409.

use shop_adapter::identity;
use shop_adapter::respond::{json, HandlerResult};
use shop_adapter::sqlite::Tx;
use shop_domain::order::{OrderCommand, OrderState, Outcome};
use shop_domain::placed_order::PlacedOrder;
use spin_sdk::http::Request;
use spin_sdk::sqlite::Connection;

use crate::db::{self, OrUnavailable};
use crate::problems::{self, order_not_found};
use crate::store::orders::{self, Event};
use crate::store::outbox::{self, Ring};
use crate::store::releases;
use crate::trace::Trace;
use crate::view::{self, OrderView};
use crate::{ids, settle};

/// Optimistic-concurrency retries before giving up with 409.
const MAX_ATTEMPTS: usize = 3;

pub async fn handle(req: &Request, order_id: &str) -> HandlerResult {
    let customer = identity::customer(req)?;
    if !view::is_order_id(order_id) {
        return Err(order_not_found(order_id));
    }
    let trace = Trace::of(req);
    let conn = db::open()?;
    for _ in 0..MAX_ATTEMPTS {
        // Another customer's order is answered as missing: its existence is not theirs to know.
        let order = orders::load(&conn, order_id)
            .or_unavailable("read order")?
            .filter(|o| customer.owns(o.user_id.as_str()))
            .ok_or_else(|| order_not_found(order_id))?;
        let next = match order.apply(OrderCommand::Cancel) {
            Err(refused) => return Err(problems::invalid_transition(refused, order.status())),
            Ok(Outcome::Unchanged(_)) => {
                release_if_open(&conn, &order.reservation_id, &trace).await;
                return Ok(json(200, &OrderView::from(&order)));
            }
            Ok(Outcome::Changed(next)) => next,
        };
        // `None`: someone changed the order between our read and write; read again.
        let Some(message_id) =
            write_cancel(&conn, &order, next, &trace).or_unavailable("cancel order")?
        else {
            continue;
        };
        outbox::publish(&conn, &[message_id], Ring::Now);
        release_if_open(&conn, &order.reservation_id, &trace).await;
        let order = orders::load(&conn, order_id)
            .or_unavailable("read order")?
            .ok_or_else(|| order_not_found(order_id))?;
        return Ok(json(200, &OrderView::from(&order)));
    }
    Err(problems::concurrent_update())
}

/// The state change, outbox message and pending release in one transaction; the message id, or
/// `None` when the version moved on (nothing written).
fn write_cancel(
    conn: &Connection,
    order: &PlacedOrder,
    to: OrderState,
    trace: &Trace,
) -> anyhow::Result<Option<String>> {
    let now = ids::now_ms();
    let tx = Tx::begin(conn)?;
    let Some(message_id) =
        orders::transition(conn, order, to, &Event::Cancelled, trace.trace_id(), now)?
    else {
        tx.rollback();
        return Ok(None);
    };
    let (rid, oid) = (&order.reservation_id, Some(order.order_id.as_str()));
    releases::record(conn, rid, oid, releases::Reason::OrderCancelled, now)?;
    tx.commit()?;
    Ok(Some(message_id))
}

/// Releases the reservation if a release is still pending; a failure stays recorded for the
/// compensator and does not fail the (already committed) cancel.
async fn release_if_open(conn: &Connection, reservation_id: &str, trace: &Trace) {
    if releases::is_open(conn, reservation_id).unwrap_or(true) {
        settle::release(conn, reservation_id, trace.traceparent()).await;
    }
}

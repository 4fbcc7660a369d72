//! `POST /api/orders/{order_id}/cancel`: PENDING_PAYMENT -> CANCELLED, releasing the stock.
//!
//! The order is read, the cancel decided and written (the state change, the `OrderCancelled`
//! outbox message and a `pending_releases` row) in one `BEGIN IMMEDIATE` transaction; only then
//! is the reservation released at the stock component. Releasing first would risk freed stock on
//! an order that a concurrent payment then marks PAID; this way the worst case is a committed
//! cancel whose release call failed, which the compensator finishes from `pending_releases`.
//! Cancelling a cancelled order is 200 again (and retries a release that is still pending); once
//! PAID, SHIPPED, COMPLETED or EXPIRED it is 409.
//!
//! Why the read is inside the transaction: concurrent cancels then simply queue on the write
//! lock and the later ones find it CANCELLED (reading outside and retrying on a moved version
//! could run out of retries and answer a spurious 409).

use shop_adapter::identity::{self, Customer};
use shop_adapter::ratelimit::RouteKind;
use shop_adapter::respond::{finish, json, HandlerResult};
use shop_adapter::sqlite::Tx;
use shop_adapter::Problem;
use shop_domain::order::{OrderCommand, OrderState, Outcome};
use shop_domain::placed_order::PlacedOrder;
use spin_sdk::http::Request;
use spin_sdk::sqlite::Connection;

use crate::db::{self, OrUnavailable};
use crate::guards;
use crate::problems::{self, order_not_found};
use crate::store::orders::{self, Event};
use crate::store::outbox::{self, Ring};
use crate::store::releases;
use crate::trace::Trace;
use crate::view::{self, OrderView};
use crate::{ids, settle};

/// What the transaction decided.
enum Decided {
    /// Cancelled now: the order before the change, and the `OrderCancelled` message's id.
    Cancelled(PlacedOrder, String),
    /// Cancelled already.
    Already(PlacedOrder),
    Refused(Problem),
}

pub async fn handle(req: &Request, order_id: &str) -> HandlerResult {
    let customer = identity::customer(req)?;
    let admitted = guards::admit_customer_read(&customer, RouteKind::Write)?;
    Ok(admitted.apply(finish(cancel(req, order_id, &customer).await)))
}

async fn cancel(req: &Request, order_id: &str, customer: &Customer) -> HandlerResult {
    if !view::is_order_id(order_id) {
        return Err(order_not_found(order_id));
    }
    let trace = Trace::of(req);
    let conn = db::open_for(customer.as_str())?;
    let order = match decide(&conn, order_id, customer, &trace).or_unavailable("cancel order")? {
        Decided::Refused(problem) => return Err(problem),
        Decided::Already(order) => order,
        Decided::Cancelled(order, message_id) => {
            outbox::publish(&conn, &[message_id], Ring::Now);
            order
        }
    };
    release_if_open(&conn, &order.reservation_id, &trace).await;
    let order = orders::load(&conn, order_id)
        .or_unavailable("read order")?
        .ok_or_else(|| order_not_found(order_id))?;
    Ok(json(200, &OrderView::from(&order)))
}

/// Reads, decides and (when it changes) writes in one transaction, committed on every outcome.
fn decide(
    conn: &Connection,
    order_id: &str,
    customer: &Customer,
    trace: &Trace,
) -> anyhow::Result<Decided> {
    let now = ids::now_ms();
    let tx = Tx::begin(conn)?;
    // Another customer's order is answered as missing: its existence is not theirs to know.
    let order = orders::load(conn, order_id)?.filter(|o| customer.owns(o.user_id.as_str()));
    let decided = match order {
        None => Decided::Refused(order_not_found(order_id)),
        Some(order) => match order.apply(OrderCommand::Cancel) {
            Err(refused) => Decided::Refused(problems::invalid_transition(refused, order.status())),
            Ok(Outcome::Unchanged(_)) => Decided::Already(order),
            Ok(Outcome::Changed(next)) => match write_cancel(conn, &order, next, trace, now)? {
                Some(message_id) => Decided::Cancelled(order, message_id),
                // Cannot happen under the write lock; answered as a race if it ever does.
                None => Decided::Refused(problems::concurrent_update()),
            },
        },
    };
    tx.commit()?;
    Ok(decided)
}

/// The state change, outbox message and pending release, inside the caller's transaction; the
/// message id, or `None` when the version moved on.
fn write_cancel(
    conn: &Connection,
    order: &PlacedOrder,
    to: OrderState,
    trace: &Trace,
    now: i64,
) -> anyhow::Result<Option<String>> {
    let Some(message_id) =
        orders::transition(conn, order, to, &Event::Cancelled, trace.trace_id(), now)?
    else {
        return Ok(None);
    };
    let (rid, oid) = (&order.reservation_id, Some(order.order_id.as_str()));
    releases::record(conn, rid, oid, releases::Reason::OrderCancelled, now)?;
    Ok(Some(message_id))
}

/// Releases the reservation if a release is still pending; a failure stays recorded for the
/// compensator and does not fail the (already committed) cancel.
async fn release_if_open(conn: &Connection, reservation_id: &str, trace: &Trace) {
    if releases::is_open(conn, reservation_id).unwrap_or(true) {
        settle::release(conn, reservation_id, trace.traceparent()).await;
    }
}

//! `POST /api/orders/{order_id}/cancel`: PENDING_PAYMENT -> CANCELLED, releasing the stock.
//!
//! The state change, the `OrderCancelled` outbox message and a `pending_releases` row are one
//! transaction, written `WHERE version = <read version>`; only then is the reservation released
//! at the stock component. Releasing first would risk freed stock on an order that a concurrent
//! payment then marks PAID; this way the worst case is a committed cancel whose release call
//! failed, which the compensator finishes from `pending_releases`. Cancelling a cancelled order
//! is 200 again (and retries a release that is still pending); once PAID, SHIPPED, COMPLETED or
//! EXPIRED it is 409.

use serde_json::json;
use shop_adapter::identity;
use shop_adapter::respond::{json, HandlerResult};
use shop_adapter::sqlite::{changes, Tx};
use shop_adapter::Problem;
use shop_domain::order::{OrderCommand, OrderState, OrderStatus, Outcome};
use spin_sdk::http::Request;
use spin_sdk::sqlite::Connection;

use crate::cmd::get::not_found;
use crate::db::{self, int, text};
use crate::view::{self, StoredOrder};
use crate::{ids, outbox, stock};

/// Optimistic-concurrency retries before giving up with 409.
const MAX_ATTEMPTS: usize = 3;

pub async fn handle(req: &Request, order_id: &str) -> HandlerResult {
    let customer = identity::customer(req)?;
    if !view::is_order_id(order_id) {
        return Err(not_found(order_id));
    }
    let traceparent = req
        .header("traceparent")
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    let trace_id = traceparent
        .as_deref()
        .and_then(shop_domain::trace::trace_id);
    let tp = trace_id.as_ref().and(traceparent.as_deref());
    let conn = db::open()?;

    for _ in 0..MAX_ATTEMPTS {
        // Another customer's order is answered as missing: its existence is not theirs to know.
        let order = view::load(&conn, order_id)?
            .filter(|o| customer.owns(&o.view.user_id))
            .ok_or_else(|| not_found(order_id))?;
        let status = OrderStatus::parse(&order.view.status)
            .ok_or_else(|| Problem::internal("order status", &order.view.status))?;
        let state = OrderState {
            status,
            version: order.view.version,
        };
        match state.apply(OrderCommand::Cancel) {
            Err(refused) => {
                return Err(Problem::conflict("invalid-transition", refused.to_string())
                    .with("order_status", status.as_str()))
            }
            Ok(Outcome::Unchanged(_)) => {
                release(&conn, &order.reservation_id, tp).await;
                return Ok(json(200, &order.view));
            }
            Ok(Outcome::Changed(next)) => {
                match write_cancel(&conn, &order, state, next, trace_id.as_deref()) {
                    Ok(Some(message_id)) => {
                        outbox::publish(&conn, &[message_id]);
                        release(&conn, &order.reservation_id, tp).await;
                        let order =
                            view::load(&conn, order_id)?.ok_or_else(|| not_found(order_id))?;
                        return Ok(json(200, &order.view));
                    }
                    // Someone changed the order between our read and write: read again.
                    Ok(None) => continue,
                    Err(e) => return Err(db::unavailable("cancel order", e)),
                }
            }
        }
    }
    Err(Problem::conflict(
        "concurrent-update",
        "the order was changed concurrently; retry",
    ))
}

/// The state change, outbox message and pending release in one transaction; the message id, or
/// `None` when the version moved on (nothing written).
fn write_cancel(
    conn: &Connection,
    order: &StoredOrder,
    from: OrderState,
    to: OrderState,
    trace_id: Option<&str>,
) -> anyhow::Result<Option<String>> {
    let now = ids::now_ms();
    let tx = Tx::begin(conn)?;
    conn.execute(
        "UPDATE orders SET status = ?, version = ?, updated_ms = ? WHERE order_id = ? AND version = ?",
        &[
            text(to.status.as_str()),
            int(to.version),
            int(now),
            text(&order.view.order_id),
            int(from.version),
        ],
    )?;
    if changes(conn)? != 1 {
        tx.rollback();
        return Ok(None);
    }
    let payload = json!({
        "order_id": order.view.order_id,
        "user_id": order.view.user_id,
        "status": to.status.as_str(),
        "previous_status": from.status.as_str(),
        "version": to.version,
        "reservation_id": order.reservation_id,
        "cancelled_at": ids::rfc3339(now),
    });
    let message_id = outbox::append(
        conn,
        &outbox::Message {
            kind: "OrderCancelled",
            aggregate_id: &order.view.order_id,
            payload: &payload,
            trace_id,
            now_ms: now,
        },
    )?;
    conn.execute(
        "INSERT OR IGNORE INTO pending_releases (reservation_id, order_id, reason, created_ms)
         VALUES (?, ?, 'order-cancelled', ?)",
        &[
            text(&order.reservation_id),
            text(&order.view.order_id),
            int(now),
        ],
    )?;
    tx.commit()?;
    Ok(Some(message_id))
}

/// Releases the reservation if a release is still pending; a failure stays recorded for the
/// compensator and does not fail the (already committed) cancel.
async fn release(conn: &Connection, reservation_id: &str, tp: Option<&str>) {
    let pending = conn
        .execute(
            "SELECT 1 FROM pending_releases WHERE reservation_id = ? AND released_ms IS NULL",
            &[text(reservation_id)],
        )
        .map(|r| !r.rows.is_empty())
        .unwrap_or(true);
    if !pending {
        return;
    }
    match stock::release(reservation_id, tp).await {
        Ok(()) => {
            let _ = conn.execute(
                "UPDATE pending_releases SET released_ms = ? WHERE reservation_id = ?",
                &[int(ids::now_ms()), text(reservation_id)],
            );
        }
        Err(e) => {
            eprintln!("order: releasing {reservation_id} failed, left to the compensator: {e}");
            let _ = conn.execute(
                "UPDATE pending_releases SET attempts = attempts + 1, last_error = ? WHERE reservation_id = ?",
                &[text(e.to_string()), text(reservation_id)],
            );
        }
    }
}

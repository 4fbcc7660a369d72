//! Flash order requests (the `flash` stream, drained by the order context's receiver as group
//! `order`, behind its inbox): each ticket's `FlashOrderRequested` becomes one order, in the
//! buyer's shard, at the flash price, awaiting payment until the reservation's own expiry, with
//! the reservation the stock context already made. From there it is an ordinary order: the
//! payment, cancel and expiry flows settle its reservation, and the stock context gives an
//! expired or cancelled flash unit back to its sale.
//!
//! Exactly once per ticket: the order and its `flash_orders` row (ticket id PRIMARY KEY) are
//! written in the same transaction as the inbox row; a request for a ticket that already has its
//! order (the compensator re-appended it) announces that order again. The answer to the stock
//! context (`FlashOrderPlaced`, or `FlashOrderRefused` with the reason, which gives the unit
//! back) goes through the outbox, in that same transaction.

use shop_domain::flash::{FlashOrderPlaced, FlashOrderRefused, FlashOrderRequested, RefusalReason};
use shop_domain::idempotency::{ClaimKey, IdempotencyKey};
use shop_domain::messages::OrderEvent;
use shop_domain::new_order::{Quantity, UserId};
use shop_domain::order::OrderState;
use shop_domain::placed_order::{PlacedLine, PlacedOrder};
use shop_domain::{Currency, Money, Sku};
use spin_sdk::sqlite::Connection;

use crate::ids;
use crate::store::outbox;
use crate::store::{flash_orders, orders};

/// Applies one `FlashOrderRequested` inside the caller's transaction (after its inbox row);
/// returns the ids of the outbox messages written. Its fields are strings on purpose: one that
/// is not valid (a user id, a SKU, a price) is refused with `invalid-request`, which answers
/// the ticket and gives its unit back.
pub fn place(
    conn: &Connection,
    req: &FlashOrderRequested,
    now: i64,
) -> anyhow::Result<Vec<String>> {
    if let Some(order_id) = flash_orders::order_of(conn, &req.ticket_id)? {
        return placed(conn, req, &order_id, now).map(|m| vec![m]);
    }
    let order = match build(req, now) {
        Ok(order) => order,
        Err(reason) => return refused(conn, req, reason, now).map(|m| vec![m]),
    };
    // Unscoped: no customer's own key (scoped: `<user>\n<key>`) can ever equal it.
    let key = ClaimKey::unscoped(IdempotencyKey::parse(&format!("flash:{}", req.ticket_id))?);
    orders::insert(conn, &order, &key)?;
    flash_orders::insert(conn, &req.ticket_id, &req.sale_id, &order.order_id, now)?;
    placed(conn, req, &order.order_id, now).map(|m| vec![m])
}

/// The order of a request, or why there is none.
fn build(req: &FlashOrderRequested, now: i64) -> Result<PlacedOrder, RefusalReason> {
    let invalid = |_| RefusalReason::InvalidRequest;
    let user_id = UserId::parse(&req.customer).map_err(invalid)?;
    let sku = Sku::parse(&req.sku).map_err(|_| RefusalReason::InvalidRequest)?;
    let currency = Currency::parse(&req.currency).map_err(|_| RefusalReason::InvalidRequest)?;
    let unit_price =
        Money::new(req.unit_price, currency).map_err(|_| RefusalReason::InvalidRequest)?;
    let quantity =
        Quantity::parse(i64::from(req.quantity)).map_err(|_| RefusalReason::InvalidRequest)?;
    let total = unit_price
        .checked_mul(quantity.get())
        .map_err(|_| RefusalReason::InvalidRequest)?;
    // Its reservation is due for release already: no order could be paid in time.
    if req.expires_at_ms <= now {
        return Err(RefusalReason::ReservationExpired);
    }
    Ok(PlacedOrder {
        order_id: ids::sortable_id("ord_"),
        user_id,
        state: OrderState::new(),
        lines: vec![PlacedLine {
            sku,
            quantity,
            unit_price,
            line_total: total,
        }],
        currency,
        subtotal: total,
        discount: Money::zero(currency),
        total,
        coupon_code: None,
        reservation_id: req.reservation_id.clone(),
        created_ms: now,
        expires_ms: req.expires_at_ms,
        paid: None,
        refund_reason: None,
    })
}

fn placed(
    conn: &Connection,
    req: &FlashOrderRequested,
    order_id: &str,
    now: i64,
) -> anyhow::Result<String> {
    let message = FlashOrderPlaced {
        ticket_id: req.ticket_id.clone(),
        sale_id: req.sale_id.clone(),
        order_id: order_id.to_owned(),
        reservation_id: req.reservation_id.clone(),
    };
    append(conn, OrderEvent::FlashOrderPlaced(message), order_id, now)
}

fn refused(
    conn: &Connection,
    req: &FlashOrderRequested,
    reason: RefusalReason,
    now: i64,
) -> anyhow::Result<String> {
    eprintln!(
        "order-events: flash ticket {} of sale {} refused: {}",
        req.ticket_id,
        req.sale_id,
        reason.as_str()
    );
    let message = FlashOrderRefused {
        ticket_id: req.ticket_id.clone(),
        sale_id: req.sale_id.clone(),
        reservation_id: req.reservation_id.clone(),
        reason,
    };
    append(
        conn,
        OrderEvent::FlashOrderRefused(message),
        &req.ticket_id,
        now,
    )
}

fn append(
    conn: &Connection,
    message: OrderEvent,
    aggregate_id: &str,
    now: i64,
) -> anyhow::Result<String> {
    outbox::append(
        conn,
        &outbox::Message::new(&message, aggregate_id, None, now)?,
    )
}

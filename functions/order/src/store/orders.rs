//! Orders and their lines (`orders`, `order_lines`): a [`PlacedOrder`] in, a [`PlacedOrder`] out.
//! Statuses are bound from [`OrderStatus::as_str`], never spelled in SQL.

use anyhow::Context;
use shop_adapter::sqlite::{changes, text_or_null};
use shop_domain::cursor::Cursor;
use shop_domain::idempotency::ClaimKey;
use shop_domain::messages::{
    CancelReason, OrderCancelled, OrderChange, OrderEvent, OrderExpired, OrderPaid, OrderRefunded,
    RefundReason,
};
use shop_domain::new_order::{CouponCode, Quantity, UserId};
use shop_domain::order::{OrderState, OrderStatus};
use shop_domain::payment::ProviderId;
use shop_domain::placed_order::{Paid, PlacedLine, PlacedOrder};
use shop_domain::reservation::ReservationId;
use shop_domain::{Currency, Money, Sku};
use spin_sdk::sqlite::{Connection, RowResult, Value};

use crate::db::{col_i64, col_opt_str, col_str, int, text};

use crate::ids;
use crate::store::outbox;

const COLUMNS: &str =
    "order_id, user_id, status, currency, subtotal, discount, total, coupon_code, \
     created_ms, expires_ms, version, reservation_id, payment_id, paid_ms, refund_reason";

/// Inserts `order` and its lines, inside the caller's transaction; `key` is the customer's key it
/// was created under (UNIQUE: one key backs one order).
pub fn insert(conn: &Connection, order: &PlacedOrder, key: &ClaimKey) -> anyhow::Result<()> {
    conn.execute(
        "INSERT INTO orders (order_id, user_id, status, currency, subtotal, discount, total, coupon_code,
                             idempotency_key, reservation_id, created_ms, expires_ms, updated_ms, version)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        &[
            text(&order.order_id),
            text(order.user_id.as_str()),
            text(order.status().as_str()),
            text(order.currency.as_str()),
            int(order.subtotal.minor()),
            int(order.discount.minor()),
            int(order.total.minor()),
            text_or_null(order.coupon_code.as_ref().map(CouponCode::as_str)),
            text(key.scoped_text()),
            text(&order.reservation_id),
            int(order.created_ms),
            int(order.expires_ms),
            int(order.created_ms),
            int(order.version()),
        ],
    )?;
    // Every line in one statement: one call less per line while the transaction holds the
    // write lock (at most 100 lines, 600 parameters, far below SQLite's limit).
    if order.lines.is_empty() {
        return Ok(()); // unreachable: a placed order has at least one line (NewOrder::parse)
    }
    let mut params = Vec::with_capacity(order.lines.len() * 6);
    for (line_no, line) in order.lines.iter().enumerate() {
        params.extend([
            text(&order.order_id),
            int(line_no as i64),
            text(line.sku.as_str()),
            int(i64::from(line.quantity.get())),
            int(line.unit_price.minor()),
            int(line.line_total.minor()),
        ]);
    }
    let rows = vec!["(?, ?, ?, ?, ?, ?)"; order.lines.len()].join(", ");
    conn.execute(
        &format!("INSERT INTO order_lines (order_id, line_no, sku, quantity, unit_price, line_total) VALUES {rows}"),
        &params,
    )?;
    Ok(())
}

/// The order `order_id`, if it exists.
pub fn load(conn: &Connection, order_id: &str) -> anyhow::Result<Option<PlacedOrder>> {
    let sql = format!("SELECT {COLUMNS} FROM orders WHERE order_id = ?");
    let rows = conn.execute(&sql, &[text(order_id)])?;
    rows.rows.first().map(|r| from_row(conn, r)).transpose()
}

/// The customer of order `order_id`, if this database holds it.
pub fn owner(conn: &Connection, order_id: &str) -> anyhow::Result<Option<String>> {
    let rows = conn.execute(
        "SELECT user_id FROM orders WHERE order_id = ?",
        &[text(order_id)],
    )?;
    Ok(rows.rows.first().map(|r| col_str(r, 0)))
}

/// Every customer with an order in this database.
pub fn customers(conn: &Connection) -> anyhow::Result<Vec<String>> {
    let rows = conn.execute("SELECT DISTINCT user_id FROM orders", &[])?;
    Ok(rows.rows.iter().map(|r| col_str(r, 0)).collect())
}

/// Up to `limit` orders of `user_id`, newest first, strictly after `after` (keyset pagination on
/// `(created_ms, order_id)`, index `orders_by_user`).
pub fn page(
    conn: &Connection,
    user_id: &UserId,
    after: Option<&Cursor>,
    limit: i64,
) -> anyhow::Result<Vec<PlacedOrder>> {
    let rows = match after {
        None => conn.execute(
            &format!(
                "SELECT {COLUMNS} FROM orders WHERE user_id = ?
                 ORDER BY created_ms DESC, order_id DESC LIMIT ?"
            ),
            &[text(user_id.as_str()), int(limit)],
        ),
        Some(c) => conn.execute(
            &format!(
                "SELECT {COLUMNS} FROM orders WHERE user_id = ?
                   AND (created_ms < ? OR (created_ms = ? AND order_id < ?))
                 ORDER BY created_ms DESC, order_id DESC LIMIT ?"
            ),
            &[
                text(user_id.as_str()),
                int(c.created_ms),
                int(c.created_ms),
                text(&c.order_id),
                int(limit),
            ],
        ),
    }?;
    rows.rows.iter().map(|r| from_row(conn, r)).collect()
}

/// Up to `limit` orders awaiting payment whose deadline is at or before `now`, earliest first.
pub fn past_deadline(conn: &Connection, now: i64, limit: i64) -> anyhow::Result<Vec<PlacedOrder>> {
    let rows = conn.execute(
        &format!(
            "SELECT {COLUMNS} FROM orders WHERE status = ? AND expires_ms <= ?
             ORDER BY expires_ms LIMIT ?"
        ),
        &[
            text(OrderStatus::PendingPayment.as_str()),
            int(now),
            int(limit),
        ],
    )?;
    rows.rows.iter().map(|r| from_row(conn, r)).collect()
}

/// A row of [`COLUMNS`] and its lines, parsed back into the domain type.
fn from_row(conn: &Connection, row: &RowResult) -> anyhow::Result<PlacedOrder> {
    let order_id = col_str(row, 0);
    let currency =
        Currency::parse(&col_str(row, 3)).with_context(|| format!("currency of {order_id}"))?;
    let money = |i: usize| {
        Money::new(col_i64(row, i), currency).with_context(|| format!("amount of {order_id}"))
    };
    let status = col_str(row, 2);
    let paid = match (col_opt_str(row, 12), row.get::<i64>(13)) {
        (Some(payment_id), Some(at_ms)) => Some(Paid { payment_id, at_ms }),
        _ => None,
    };
    Ok(PlacedOrder {
        user_id: UserId::parse(&col_str(row, 1)).map_err(anyhow::Error::msg)?,
        state: OrderState {
            status: OrderStatus::parse(&status)
                .with_context(|| format!("order {order_id} has status {status}"))?,
            version: col_i64(row, 10),
        },
        lines: lines(conn, &order_id, currency)?,
        currency,
        subtotal: money(4)?,
        discount: money(5)?,
        total: money(6)?,
        coupon_code: col_opt_str(row, 7)
            .map(|c| CouponCode::parse(&c))
            .transpose()
            .map_err(anyhow::Error::msg)?,
        created_ms: col_i64(row, 8),
        expires_ms: col_i64(row, 9),
        reservation_id: col_str(row, 11),
        paid,
        refund_reason: col_opt_str(row, 14).and_then(|r| RefundReason::parse(&r)),
        order_id,
    })
}

fn lines(conn: &Connection, order_id: &str, currency: Currency) -> anyhow::Result<Vec<PlacedLine>> {
    let rows = conn.execute(
        "SELECT sku, quantity, unit_price, line_total FROM order_lines WHERE order_id = ? ORDER BY line_no",
        &[text(order_id)],
    )?;
    rows.rows
        .iter()
        .map(|l| {
            Ok(PlacedLine {
                sku: Sku::parse(&col_str(l, 0))?,
                quantity: Quantity::parse(col_i64(l, 1))?,
                unit_price: Money::new(col_i64(l, 2), currency)?,
                line_total: Money::new(col_i64(l, 3), currency)?,
            })
        })
        .collect()
}

/// The change a command made to an order, announced by the outbox message of the same name.
pub enum Event<'a> {
    Cancelled,
    Expired,
    Paid {
        payment_id: &'a str,
    },
    /// Cancelled because the stock context could not sell its units after it was paid.
    OutOfStock,
    /// The provider refunded its payment in full.
    Refunded,
}

/// Moves `order` to `to` and appends the message announcing it, inside the caller's
/// transaction, only if the order is still at the version it was read with (optimistic
/// concurrency). The message id, or `None` when someone changed the order meanwhile (nothing
/// written: the caller rolls back).
pub fn transition(
    conn: &Connection,
    order: &PlacedOrder,
    to: OrderState,
    event: &Event<'_>,
    trace_id: Option<&str>,
    now: i64,
) -> anyhow::Result<Option<String>> {
    let payment_id = match event {
        Event::Paid { payment_id } => Some(*payment_id),
        _ => None,
    };
    // A payment is remembered with the status it causes; other changes keep it as it is.
    conn.execute(
        "UPDATE orders SET status = ?, version = ?, updated_ms = ?,
                payment_id = COALESCE(?, payment_id), paid_ms = COALESCE(?, paid_ms)
         WHERE order_id = ? AND version = ?",
        &[
            text(to.status.as_str()),
            int(to.version),
            int(now),
            text_or_null(payment_id),
            payment_id.map_or(Value::Null, |_| int(now)),
            text(&order.order_id),
            int(order.version()),
        ],
    )?;
    if changes(conn)? != 1 {
        return Ok(None);
    }
    let message = message(order, to, event, now)?;
    let msg = outbox::Message::new(&message, &order.order_id, trace_id, now)?;
    outbox::append(conn, &msg).map(Some)
}

/// The message announcing `event` (the order moved to `to`).
fn message(
    order: &PlacedOrder,
    to: OrderState,
    event: &Event<'_>,
    now: i64,
) -> anyhow::Result<OrderEvent> {
    let change = OrderChange {
        order_id: order.order_id.clone(),
        user_id: order.user_id.clone(),
        status: to.status,
        previous_status: order.status(),
        version: to.version,
        reservation_id: reservation_id(order)?,
        coupon_code: order.coupon_code.clone(),
    };
    let at = ids::rfc3339(now);
    Ok(match event {
        Event::Cancelled | Event::OutOfStock => OrderEvent::OrderCancelled(OrderCancelled {
            order: change,
            cancelled_at: at,
            reason: matches!(event, Event::OutOfStock).then_some(CancelReason::OutOfStock),
        }),
        Event::Expired => OrderEvent::OrderExpired(OrderExpired {
            order: change,
            expired_at: at,
        }),
        Event::Refunded => OrderEvent::OrderRefunded(OrderRefunded {
            order: change,
            refunded_at: at,
        }),
        Event::Paid { payment_id } => OrderEvent::OrderPaid(OrderPaid {
            order: change,
            total: order.total,
            payment_intent_id: ProviderId::parse(payment_id)
                .map_err(|e| anyhow::anyhow!("payment id {payment_id:?}: {e}"))?,
            paid_at: at,
        }),
    })
}

/// The order's reservation id as the contract types it.
pub fn reservation_id(order: &PlacedOrder) -> anyhow::Result<ReservationId> {
    ReservationId::parse(&order.reservation_id)
        .map_err(|e| anyhow::anyhow!("order {} reservation id: {e}", order.order_id))
}

/// Records why the shop asked for `order_id`'s money to go back (shown in its view) and for
/// which payment, inside the caller's transaction. Not a status change: the version stays.
pub fn set_refund_reason(
    conn: &Connection,
    order_id: &str,
    payment_id: &str,
    reason: RefundReason,
) -> anyhow::Result<()> {
    conn.execute(
        "UPDATE orders SET refund_reason = ?, refund_payment_id = ? WHERE order_id = ?",
        &[text(reason.as_str()), text(payment_id), text(order_id)],
    )?;
    Ok(())
}

/// Whether the shop asked to give back `payment_id` for `order_id` (its last refund request).
pub fn refund_asked_for(
    conn: &Connection,
    order_id: &str,
    payment_id: &str,
) -> anyhow::Result<bool> {
    let rows = conn.execute(
        "SELECT 1 FROM orders WHERE order_id = ? AND refund_payment_id = ?",
        &[text(order_id), text(payment_id)],
    )?;
    Ok(!rows.rows.is_empty())
}

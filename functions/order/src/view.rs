//! The order as clients see it, and loading it from the database.

use serde::Serialize;
use shop_adapter::Problem;
use spin_sdk::sqlite::Connection;

use crate::db::{self, col_i64, col_opt_str, col_str, text};
use crate::ids::rfc3339;

#[derive(Debug, Clone, Serialize)]
pub struct LineView {
    pub sku: String,
    pub quantity: i64,
    pub unit_price: i64,
    pub line_total: i64,
}

/// `{order_id, user_id, status, items, subtotal, discount, total, currency, coupon_code,
/// created_at, expires_at, version}`; amounts in minor units of `currency`.
#[derive(Debug, Clone, Serialize)]
pub struct OrderView {
    pub order_id: String,
    pub user_id: String,
    pub status: String,
    pub items: Vec<LineView>,
    pub subtotal: i64,
    pub discount: i64,
    pub total: i64,
    pub currency: String,
    pub coupon_code: Option<String>,
    pub created_at: String,
    pub expires_at: String,
    pub version: i64,
}

/// What the state machine and the cancel command need besides the view.
#[derive(Debug, Clone)]
pub struct StoredOrder {
    pub view: OrderView,
    pub reservation_id: String,
    pub created_ms: i64,
}

pub const ORDER_COLUMNS: &str = "order_id, user_id, status, currency, subtotal, discount, total, \
     coupon_code, created_ms, expires_ms, version, reservation_id";

/// Builds a stored order from a row of [`ORDER_COLUMNS`] plus its lines.
fn from_row(conn: &Connection, row: &spin_sdk::sqlite::RowResult) -> anyhow::Result<StoredOrder> {
    let order_id = col_str(row, 0);
    let lines = conn.execute(
        "SELECT sku, quantity, unit_price, line_total FROM order_lines WHERE order_id = ? ORDER BY line_no",
        &[text(&order_id)],
    )?;
    let items = lines
        .rows
        .iter()
        .map(|l| LineView {
            sku: col_str(l, 0),
            quantity: col_i64(l, 1),
            unit_price: col_i64(l, 2),
            line_total: col_i64(l, 3),
        })
        .collect();
    let created_ms = col_i64(row, 8);
    Ok(StoredOrder {
        view: OrderView {
            order_id,
            user_id: col_str(row, 1),
            status: col_str(row, 2),
            items,
            currency: col_str(row, 3),
            subtotal: col_i64(row, 4),
            discount: col_i64(row, 5),
            total: col_i64(row, 6),
            coupon_code: col_opt_str(row, 7),
            created_at: rfc3339(created_ms),
            expires_at: rfc3339(col_i64(row, 9)),
            version: col_i64(row, 10),
        },
        reservation_id: col_str(row, 11),
        created_ms,
    })
}

/// The order `order_id`, if it exists.
pub fn load(conn: &Connection, order_id: &str) -> Result<Option<StoredOrder>, Problem> {
    let rows = conn
        .execute(
            &format!("SELECT {ORDER_COLUMNS} FROM orders WHERE order_id = ?"),
            &[text(order_id)],
        )
        .map_err(|e| db::unavailable("read order", e))?;
    match rows.rows.first() {
        None => Ok(None),
        Some(row) => from_row(conn, row)
            .map(Some)
            .map_err(|e| db::unavailable("read order lines", e)),
    }
}

/// Orders of a result set of [`ORDER_COLUMNS`] rows.
pub fn load_rows(
    conn: &Connection,
    rows: &[spin_sdk::sqlite::RowResult],
) -> Result<Vec<StoredOrder>, Problem> {
    rows.iter()
        .map(|r| from_row(conn, r).map_err(|e| db::unavailable("read order lines", e)))
        .collect()
}

/// Order ids this component issues: `ord_` and 32 lowercase hex digits. Anything else cannot
/// exist, so it is a 404 without a query.
pub fn is_order_id(s: &str) -> bool {
    s.strip_prefix("ord_")
        .is_some_and(|h| h.len() == 32 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

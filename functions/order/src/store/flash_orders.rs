//! Which order a flash ticket became (`flash_orders`).

use spin_sdk::sqlite::Connection;

use crate::db::{col_str, int, text};

/// Records that `ticket_id` of `sale_id` became `order_id`, inside the caller's transaction.
pub fn insert(
    conn: &Connection,
    ticket_id: &str,
    sale_id: &str,
    order_id: &str,
    now: i64,
) -> anyhow::Result<()> {
    conn.execute(
        "INSERT INTO flash_orders (ticket_id, sale_id, order_id, created_ms) VALUES (?, ?, ?, ?)",
        &[text(ticket_id), text(sale_id), text(order_id), int(now)],
    )?;
    Ok(())
}

/// The order `ticket_id` became, if it became one in this database.
pub fn order_of(conn: &Connection, ticket_id: &str) -> anyhow::Result<Option<String>> {
    let rows = conn.execute(
        "SELECT order_id FROM flash_orders WHERE ticket_id = ?",
        &[text(ticket_id)],
    )?;
    Ok(rows.rows.first().map(|r| col_str(r, 0)))
}

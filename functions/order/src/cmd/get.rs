//! `GET /api/orders/{order_id}`: the order as it is now (status and version included).

use shop_adapter::respond::{json, HandlerResult};
use shop_adapter::Problem;

use crate::{db, view};

pub fn handle(order_id: &str) -> HandlerResult {
    // An id of another shape was never issued: no need to ask the database.
    if !view::is_order_id(order_id) {
        return Err(not_found(order_id));
    }
    let conn = db::open()?;
    match view::load(&conn, order_id)? {
        Some(order) => Ok(json(200, &order.view)),
        None => Err(not_found(order_id)),
    }
}

pub fn not_found(order_id: &str) -> Problem {
    Problem::not_found(format!("no order with id {order_id}"))
}

//! `GET /api/orders/{order_id}`: the order as it is now (status and version included), to its
//! customer or the admin. Another customer's order is 404 like a missing one, so order ids
//! cannot be probed.

use shop_adapter::identity;
use shop_adapter::respond::{json, HandlerResult};
use shop_adapter::Problem;
use spin_sdk::http::Request;

use crate::{db, view};

pub fn handle(req: &Request, order_id: &str) -> HandlerResult {
    let caller = identity::caller(req)?;
    // An id of another shape was never issued: no need to ask the database.
    if !view::is_order_id(order_id) {
        return Err(not_found(order_id));
    }
    let conn = db::open()?;
    match view::load(&conn, order_id)? {
        Some(order) if caller.may_read(&order.view.user_id) => Ok(json(200, &order.view)),
        _ => Err(not_found(order_id)),
    }
}

pub fn not_found(order_id: &str) -> Problem {
    Problem::not_found(format!("no order with id {order_id}"))
}

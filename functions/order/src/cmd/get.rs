//! `GET /api/orders/{order_id}`: the order as it is now (status and version included), to its
//! customer or the admin. Another customer's order is 404 like a missing one, so order ids
//! cannot be probed.

use shop_adapter::identity;
use shop_adapter::respond::{json, HandlerResult};
use spin_sdk::http::Request;

use crate::db::{self, OrUnavailable};
use crate::problems::order_not_found;
use crate::store::orders;
use crate::view::{self, OrderView};

pub fn handle(req: &Request, order_id: &str) -> HandlerResult {
    let caller = identity::caller(req)?;
    // An id of another shape was never issued: no need to ask the database.
    if !view::is_order_id(order_id) {
        return Err(order_not_found(order_id));
    }
    let conn = db::open()?;
    match orders::load(&conn, order_id).or_unavailable("read order")? {
        Some(order) if caller.may_read(order.user_id.as_str()) => {
            Ok(json(200, &OrderView::from(&order)))
        }
        _ => Err(order_not_found(order_id)),
    }
}

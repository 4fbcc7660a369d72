//! `GET /api/orders/{order_id}`: the order as it is now (status and version included), to its
//! customer or the admin. Another customer's order is 404 like a missing one, so order ids
//! cannot be probed.

use shop_adapter::identity::{self, Caller};
use shop_adapter::respond::{finish, json, HandlerResult};
use shop_domain::placed_order::PlacedOrder;
use spin_sdk::http::Request;

use crate::db::{self, OrUnavailable};
use crate::guards;
use crate::problems::order_not_found;
use crate::store::orders;
use crate::view::{self, OrderView};

pub fn handle(req: &Request, order_id: &str) -> HandlerResult {
    let caller = identity::caller(req)?;
    let admitted = guards::admit_read(&caller)?;
    Ok(admitted.apply(finish(read(&caller, order_id))))
}

fn read(caller: &Caller, order_id: &str) -> HandlerResult {
    // An id of another shape was never issued: no need to ask the database.
    if !view::is_order_id(order_id) {
        return Err(order_not_found(order_id));
    }
    let found = match caller {
        // A customer's own orders are all in their shard: another's is missing there too.
        Caller::Customer(c) => orders::load(&db::open_for(c.as_str())?, order_id),
        // The admin names no customer: the order is looked up shard by shard.
        Caller::Admin => find(&db::open_all()?, order_id),
    };
    match found.or_unavailable("read order")? {
        Some(order) if caller.may_read(order.user_id.as_str()) => {
            Ok(json(200, &OrderView::from(&order)))
        }
        _ => Err(order_not_found(order_id)),
    }
}

/// The order `order_id` in whichever shard holds it.
pub fn find(shards: &db::Shards, order_id: &str) -> anyhow::Result<Option<PlacedOrder>> {
    for conn in shards.iter() {
        if let Some(order) = orders::load(conn, order_id)? {
            return Ok(Some(order));
        }
    }
    Ok(None)
}

//! `GET /api/orders?user_id=..&limit=..&cursor=..`: a user's orders, newest first: the
//! customer's own (bearer JWT), or any user's for the admin token.
//!
//! Keyset pagination on (created_ms, order_id): each page is one indexed range scan that starts
//! strictly after the previous page's last order, so pages never overlap or skip while orders are
//! being created. `limit + 1` orders are read to know whether a next page exists without a count.

use serde::Serialize;
use shop_adapter::identity::{self, Caller};
use shop_adapter::respond::{finish, json, HandlerResult};
use shop_adapter::Problem;
use shop_domain::cursor::{Cursor, Limit};
use shop_domain::new_order::UserId;
use spin_sdk::http::Request;

use crate::db::{self, OrUnavailable};
use crate::guards;
use crate::store::orders;
use crate::view::OrderView;

#[derive(Serialize)]
struct Page {
    orders: Vec<OrderView>,
    next_cursor: Option<String>,
}

pub fn handle(req: &Request) -> HandlerResult {
    let caller = identity::caller(req)?;
    let admitted = guards::admit_read(&caller)?;
    Ok(admitted.apply(finish(list(req, &caller))))
}

fn list(req: &Request, caller: &Caller) -> HandlerResult {
    let params = query_pairs(req.query());
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let user_id = whose(caller, get("user_id"))?;
    let limit = Limit::parse(get("limit")).map_err(|e| Problem::bad_request("limit", e))?;
    // `cursor=` (empty) is the first page, like no cursor at all.
    let cursor = get("cursor")
        .filter(|c| !c.is_empty())
        .map(Cursor::decode)
        .transpose()
        .map_err(|e| Problem::bad_request("cursor", e.to_string()))?;

    // One customer's orders are all in their shard: the listing reads that one only.
    let conn = db::open_for(user_id.as_str())?;
    let limit = limit.get() as usize;
    let mut orders = orders::page(&conn, &user_id, cursor.as_ref(), limit as i64 + 1)
        .or_unavailable("list orders")?;
    let next_cursor = if orders.len() > limit {
        orders.truncate(limit);
        orders.last().map(|o| {
            Cursor {
                created_ms: o.created_ms,
                order_id: o.order_id.clone(),
            }
            .encode()
        })
    } else {
        None
    };
    let orders = orders.iter().map(OrderView::from).collect();
    Ok(json(
        200,
        &Page {
            orders,
            next_cursor,
        },
    ))
}

/// Whose orders to list: a customer's own (`user_id` may be left out, another one is 404 as if
/// it had none), any user's for the admin (who must name one).
fn whose(caller: &Caller, user_id: Option<&str>) -> Result<UserId, Problem> {
    match (caller, user_id) {
        (Caller::Customer(c), None) => Ok(c.id().clone()),
        (Caller::Customer(c), Some(u)) if c.owns(u) => Ok(c.id().clone()),
        (Caller::Customer(_), Some(_)) => Err(Problem::not_found(
            "no orders of that user_id are visible to this customer",
        )
        .with_field("user_id")),
        (Caller::Admin, None) => Err(Problem::bad_request(
            "user_id",
            "the user_id query parameter is required with the admin token",
        )),
        (Caller::Admin, Some(u)) => {
            UserId::parse(u).map_err(|e| Problem::bad_request("user_id", e))
        }
    }
}

/// `a=1&b=x%20y` into decoded pairs (`+` is a space, bad escapes are kept literally), by the
/// `url` crate's `application/x-www-form-urlencoded` parser.
fn query_pairs(query: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

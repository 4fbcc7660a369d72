//! `GET /api/flash-sales/{sale_id}/tickets/{ticket_id}` (the buyer's token): `PENDING`,
//! `ORDERED` with `order_id`, or `FAILED` with a `reason`. Another customer's ticket, or one of
//! another sale, is 404 like an unknown one: ticket ids are not a way to learn who bought.

use shop_adapter::identity;
use shop_adapter::respond::{json, HandlerResult};
use shop_adapter::Problem;
use shop_domain::flash::TicketStatus;
use spin_sdk::http::Request;

use crate::redis::{keys, Store};
use crate::view::TicketView;

pub fn handle(req: &Request, sale_id: &str, ticket_id: &str) -> HandlerResult {
    let customer = identity::customer(req)?;
    let not_found = || {
        Problem::not_found(format!(
            "no ticket {ticket_id:?} of yours in flash sale {sale_id:?}"
        ))
    };
    // A ticket id is `tkt_` and hex: anything else cannot name one (nor a key).
    let well_formed = ticket_id.len() <= 64
        && ticket_id.starts_with("tkt_")
        && ticket_id[4..].chars().all(|c| c.is_ascii_hexdigit());
    if !well_formed {
        return Err(not_found());
    }
    let f = Store::open()?.hmget(
        &keys::ticket(ticket_id),
        &["sale", "customer", "status", "order_id", "reason"],
    )?;
    let s = |i: usize| f.get(i).cloned().flatten().unwrap_or_default();
    if s(0) != sale_id || s(1) != customer.as_str() {
        return Err(not_found());
    }
    let status = TicketStatus::parse(&s(2))
        .ok_or_else(|| Problem::internal("unreadable ticket", format!("{ticket_id}: {f:?}")))?;
    Ok(json(
        200,
        &TicketView::new(ticket_id, sale_id, status, &s(3), &s(4)),
    ))
}

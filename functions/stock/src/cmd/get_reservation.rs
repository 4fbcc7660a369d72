//! `GET /api/stock/reservations/{id}`: a reservation as it is now (for the order component and
//! the compensator to check what happened after a lost response).

use shop_adapter::respond::{json, HandlerResult};
use shop_domain::reservation::ReservationId;

use crate::redis::{keys, Store, RESERVE};
use crate::settle::not_found;
use crate::view::ReservationView;

pub fn handle(id: &str) -> HandlerResult {
    let id = ReservationId::parse(id).map_err(|_| not_found(id))?;
    let store = Store::open()?;
    let fields = store.hmget(
        &keys::reservation(id.as_str()),
        &["status", "expires_at", "items"],
    )?;
    let Some(fields) = fields.into_iter().collect::<Option<Vec<String>>>() else {
        return Err(not_found(id.as_str()));
    };
    Ok(json(
        200,
        &ReservationView::from_reply(id.as_str(), &fields, &RESERVE)?,
    ))
}

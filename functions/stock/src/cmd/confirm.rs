//! `POST /api/stock/reservations/{id}/confirm`: the order was paid, its reserved units are sold.
//!
//! Idempotent: confirming a CONFIRMED reservation answers 200 again and moves nothing. A RELEASED
//! reservation (cancelled or expired) is 409. A RESERVED one whose expiry has passed is released
//! instead and answers 409 `reservation-expired`, exactly as if the compensator had run first,
//! so the result never depends on the compensator's timing.

use shop_adapter::respond::HandlerResult;
use shop_domain::reservation::ReservationAction;

use crate::redis::CONFIRM;
use crate::settle::settle;

pub fn handle(id: &str) -> HandlerResult {
    settle(id, ReservationAction::Confirm, &CONFIRM)
}

//! `POST /api/stock/reservations/{id}/release`: the order was cancelled (or its write failed),
//! the reserved units go back to available.
//!
//! Idempotent: releasing a RELEASED reservation answers 200 again and moves nothing. A
//! CONFIRMED (sold) reservation is 409; an unknown id is 404.

use shop_adapter::respond::HandlerResult;
use shop_domain::reservation::ReservationAction;

use crate::redis::RELEASE;
use crate::settle::settle;

pub fn handle(id: &str) -> HandlerResult {
    settle(id, ReservationAction::Release, &RELEASE)
}

//! The shared step of confirm and release: run confirm.lua or release.lua (same contract) and
//! turn the outcome into an answer. Which transitions are allowed is the domain's table
//! (`ReservationStatus::on`); the scripts apply it atomically with the unit moves.

use shop_adapter::respond::{json, HandlerResult};
use shop_adapter::Problem;
use shop_domain::reservation::{ReservationAction, ReservationId, ReservationStatus};

use crate::redis::{bad_reply, keys, Script, Store};
use crate::view::ReservationView;

/// How long a settled reservation is remembered: a retry of the same reservation id within this
/// window answers the stored result instead of reserving again.
pub const RETENTION_MS: u64 = 30 * 24 * 3600 * 1000;

/// Runs confirm.lua or release.lua (same contract) and maps the outcome.
pub fn settle(id: &str, action: ReservationAction, script: &Script) -> HandlerResult {
    let id = ReservationId::parse(id).map_err(|_| not_found(id))?;
    let reply = run(&Store::open()?, &id, script)?;
    let (outcome, rest) = reply
        .split_first()
        .ok_or_else(|| bad_reply(script, &reply))?;
    if outcome == "UNKNOWN" {
        return Err(not_found(id.as_str()));
    }
    let view = ReservationView::from_reply(id.as_str(), rest, script)?;
    match outcome.as_str() {
        "DONE" => Ok(json(200, &view)),
        "CONFLICT" => {
            let from =
                ReservationStatus::parse(&view.status).ok_or_else(|| bad_reply(script, &reply))?;
            // The script refused exactly what the domain table refuses; its wording comes from there.
            let detail = match from.on(action) {
                Err(refused) => refused.to_string(),
                Ok(_) => format!("reservation is {}", view.status),
            };
            Err(Problem::conflict("reservation-state", detail)
                .with("reservation_id", id.as_str())
                .with("reservation_status", &view.status))
        }
        "EXPIRED" => Err(Problem::conflict(
            "reservation-expired",
            format!(
                "reservation {id} expired at {} and was released",
                view.expires_at
            ),
        )
        .with("reservation_id", id.as_str())
        .with("reservation_status", &view.status)),
        _ => Err(bad_reply(script, &reply)),
    }
}

/// Runs confirm.lua, release.lua or fulfil.lua (same arguments) for `id`; returns the script's
/// flat reply.
pub fn run(store: &Store, id: &ReservationId, script: &Script) -> Result<Vec<String>, Problem> {
    store.run(
        script,
        &[&keys::reservation(id.as_str()), keys::EXPIRIES],
        &[
            id.as_str(),
            keys::PRODUCT_PREFIX,
            &RETENTION_MS.to_string(),
            keys::SALE_PREFIX,
        ],
    )
}

pub fn not_found(id: &str) -> Problem {
    Problem::not_found(format!("no reservation with id {id:?}"))
}

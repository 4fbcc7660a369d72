//! `POST /api/stock/reservations`: hold units of every line for a pending order, all or nothing.
//!
//! The caller names the reservation (`reservation_id`), so a retry after a timeout is safe: the
//! same id with the same lines answers the stored reservation (200, `idempotent-replayed: true`)
//! and never deducts twice; the same id with different lines is 422. The check of every line and
//! the deduction of all of them happen in one Lua script (reserve.lua), so concurrent buyers of
//! the last units can never drive `available` below zero.
//!
//! The answer carries each line's catalog unit price and currency as they were at reservation
//! time: the order component prices orders from them.

use shop_adapter::body::{parse_object, Fields};
use shop_adapter::respond::{json, HandlerResult};
use shop_adapter::Problem;
use shop_domain::reservation::{RawItem, RawReservation, ReservationRequest};
use spin_sdk::http::Request;

use crate::redis::{bad_reply, keys, Store, RESERVE};
use crate::view::ReservationView;

/// The most a reservation body may be: about three times the largest valid one (100 lines with
/// 64-character SKUs and a 128-character id, about 10 KiB).
pub const BODY_LIMIT: usize = 32 * 1024;

pub fn handle(req: &Request) -> HandlerResult {
    let request = parse(req.body())?;
    let id = request.id.as_str();
    let rkey = keys::reservation(id);
    let product_keys: Vec<String> = request
        .items
        .iter()
        .map(|i| keys::product(i.sku.as_str()))
        .collect();
    let mut key_refs: Vec<&str> = vec![&rkey, keys::EXPIRIES];
    key_refs.extend(product_keys.iter().map(String::as_str));

    let ttl_ms = (u64::from(request.ttl_seconds) * 1000).to_string();
    let fingerprint = request.fingerprint();
    let n = request.items.len().to_string();
    let quantities: Vec<String> = request
        .items
        .iter()
        .map(|i| i.quantity.get().to_string())
        .collect();
    let mut args: Vec<&str> = vec![id, &ttl_ms, &fingerprint, &n];
    for (item, q) in request.items.iter().zip(&quantities) {
        args.push(item.sku.as_str());
        args.push(q);
    }

    let store = Store::open()?;
    let reply = store.run(&RESERVE, &key_refs, &args)?;
    let (outcome, rest) = reply
        .split_first()
        .ok_or_else(|| bad_reply(&RESERVE, &reply))?;
    match outcome.as_str() {
        "CREATED" => Ok(json(201, &ReservationView::from_reply(id, rest, &RESERVE)?)),
        "EXISTING" => {
            let mut resp = json(200, &ReservationView::from_reply(id, rest, &RESERVE)?);
            resp.set_header("idempotent-replayed", "true");
            Ok(resp)
        }
        "MISMATCH" => Err(Problem::new(
            422,
            "reservation-id-reused",
            "Reservation id reused",
            format!("reservation {id} exists with different items or ttl_seconds; use a new reservation_id"),
        )
        .with_field("reservation_id")),
        "MIXED" => Err(Problem::new(
            422,
            "mixed-currencies",
            "Mixed currencies",
            format!("the items are priced in more than one currency: {}", rest.join(", ")),
        )
        .with_field("items")
        .with("skus", rest)),
        "UNKNOWN" => Err(Problem::not_found(format!("unknown sku: {}", rest.join(", ")))
            .with_field("items")
            .with("skus", rest)),
        "SHORT" => {
            let skus: Vec<&String> = rest.iter().step_by(2).collect();
            let shortages: Vec<serde_json::Value> = rest
                .chunks(2)
                .map(|c| {
                    let available = c.get(1).and_then(|a| a.parse::<u64>().ok()).unwrap_or(0);
                    serde_json::json!({"sku": c[0], "available": available})
                })
                .collect();
            let names: Vec<&str> = skus.iter().map(|s| s.as_str()).collect();
            Err(Problem::conflict(
                "insufficient-stock",
                format!("not enough stock for: {}", names.join(", ")),
            )
            .with_field("items")
            .with("skus", &skus)
            .with("shortages", shortages))
        }
        _ => Err(bad_reply(&RESERVE, &reply)),
    }
}

/// JSON -> domain request; every failure names the field.
fn parse(body: &[u8]) -> Result<ReservationRequest, Problem> {
    let body = parse_object(body)?;
    let f = Fields::root(&body);
    let reservation_id = f.str("reservation_id")?.to_owned();
    let items = f
        .objects("items")?
        .iter()
        .map(|item| {
            Ok(RawItem {
                sku: item.str("sku")?.to_owned(),
                quantity: item.i64("quantity")?,
            })
        })
        .collect::<Result<Vec<_>, Problem>>()?;
    let ttl_seconds = f.opt_i64("ttl_seconds")?;
    ReservationRequest::parse(RawReservation {
        reservation_id,
        items,
        ttl_seconds,
    })
    .map_err(|e| Problem::unprocessable(&e.field, e.detail))
}

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
    let (keys, args) = script_input(&request)?;
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let reply = Store::open()?.run(&RESERVE, &keys, &args)?;
    answer(request.id.as_str(), &reply)
}

/// reserve.lua's KEYS and ARGV for `request` (see its header).
fn script_input(request: &ReservationRequest) -> Result<(Vec<String>, Vec<String>), Problem> {
    let id = request.id.as_str();
    let mut names = vec![keys::reservation(id), keys::EXPIRIES.to_owned()];
    names.extend(request.items.iter().map(|i| keys::product(i.sku.as_str())));
    let mut args = vec![
        id.to_owned(),
        (u64::from(request.ttl_seconds) * 1000).to_string(),
        request.fingerprint(),
        request.items.len().to_string(),
    ];
    for item in &request.items {
        args.push(item.sku.as_str().to_owned());
        args.push(item.quantity.get().to_string());
    }
    // A customer's reservation counts towards their hoarding caps, in the same script.
    if let Some(customer) = &request.customer {
        let caps = Caps::from_vars()?;
        names.push(keys::holds(customer.as_str()));
        args.extend([caps.unpaid_orders, caps.units_per_product]);
    }
    Ok((names, args))
}

/// The response to reserve.lua's `reply` for reservation `id`.
fn answer(id: &str, reply: &[String]) -> HandlerResult {
    let (outcome, rest) = reply
        .split_first()
        .ok_or_else(|| bad_reply(&RESERVE, reply))?;
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
        "CAP" => Err(cap_reached(rest)),
        _ => Err(bad_reply(&RESERVE, reply)),
    }
}

/// The hoarding caps, as reserve.lua takes them ("" for no cap).
struct Caps {
    unpaid_orders: String,
    units_per_product: String,
}

impl Caps {
    /// `hoarding_max_unpaid_orders` and `hoarding_max_units_per_product`: a count, or `off`.
    fn from_vars() -> Result<Caps, Problem> {
        let read = |name: &str| -> Result<String, Problem> {
            let value = shop_adapter::vars::get(name)
                .map_err(|e| Problem::internal("read hoarding cap variable", e))?;
            match value.trim() {
                "off" => Ok(String::new()),
                n if n.parse::<u32>().is_ok_and(|n| n > 0) => Ok(n.to_owned()),
                other => Err(Problem::internal(
                    &format!("variable {name}"),
                    format!("{other:?}: expected a positive count or \"off\""),
                )),
            }
        };
        Ok(Caps {
            unpaid_orders: read("hoarding_max_unpaid_orders")?,
            units_per_product: read("hoarding_max_units_per_product")?,
        })
    }
}

/// 409 naming the cap: `{"CAP", "unpaid-orders", cap, held}` or
/// `{"CAP", "units-per-product", cap, sku, held}`.
fn cap_reached(rest: &[String]) -> Problem {
    let at = |i: usize| rest.get(i).map(String::as_str).unwrap_or_default();
    let cap: u64 = at(1).parse().unwrap_or(0);
    let problem = match at(0) {
        "unpaid-orders" => Problem::conflict(
            "hoarding-cap",
            format!("this customer already holds {cap} unpaid orders, the most allowed: pay or cancel one first"),
        )
        .with("held", at(2).parse::<u64>().unwrap_or(0)),
        _ => Problem::conflict(
            "hoarding-cap",
            format!(
                "this customer may hold at most {cap} units of {} in unpaid orders (holds {})",
                at(2),
                at(3)
            ),
        )
        .with_field("items")
        .with("skus", [at(2)])
        .with("held", at(3).parse::<u64>().unwrap_or(0)),
    };
    problem.with("cap", at(0)).with("limit", cap)
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
    let customer_id = f.opt_str("customer_id")?.map(str::to_owned);
    ReservationRequest::parse(RawReservation {
        reservation_id,
        items,
        ttl_seconds,
        customer_id,
    })
    .map_err(|e| Problem::unprocessable(&e.field, e.detail))
}

//! `POST /api/flash-sales/{sale_id}/purchase` with a customer token (the buyer is its `sub`) and
//! an `Idempotency-Key`: one unit of the sale, decided in one atomic step (purchase.lua: the key,
//! the window, the per-user limit, the remaining units, the decrement, the ticket, the
//! reservation and the order request appended to the `flash` stream, all or nothing).
//!
//! 202 `{ticket_id, status: "PENDING"}`: the order is created asynchronously by the order
//! context; `GET /api/flash-sales/{sale_id}/tickets/{ticket_id}` tells how it went. The same key
//! (per customer) answers the same ticket with its current status (200, `idempotent-replayed`),
//! whatever happened since: a retry never takes a second unit. 409 `sold-out` /
//! `limit-reached`, 422 `outside-window`, 404 for an unknown sale.

use std::sync::LazyLock;

use shop_adapter::identity::{self, Customer};
use shop_adapter::outbox::{self, Message, Outgoing, Ring, PUBLISH_LUA};
use shop_adapter::respond::{finish, json, HandlerResult};
use shop_adapter::Problem;
use shop_domain::flash::{self, FlashOrderRequested, SaleId, TicketStatus};
use shop_domain::messages::FlashRequest;
use spin_sdk::http::{Request, Response};

use crate::guards;
use crate::redis::{bad_reply, keys, Script, Store};
use crate::view::TicketView;

/// How long a flash unit waits for payment: the reservation's TTL and the order's deadline
/// (the normal order flow's payment window).
pub const PAYMENT_WINDOW_MS: u64 = 15 * 60 * 1000;

/// The adapter's `publish`, then `purchase.lua`, which calls it.
static PURCHASE: LazyLock<String> =
    LazyLock::new(|| [PUBLISH_LUA, include_str!("../lua/purchase.lua")].join("\n"));

/// The buyer first, then the sale id, then admission (the sale's and the buyer's rate limits in
/// one round trip, failing closed: 429 or 503 before anything is decided), then the purchase;
/// an admitted answer carries the limits' `RateLimit-*` headers.
pub fn handle(req: &Request, sale_id: &str) -> Response {
    let admission = identity::customer(req).and_then(|customer| {
        let id = SaleId::parse(sale_id).map_err(|_| crate::cmd::get_sale::not_found(sale_id))?;
        let admitted = guards::admit_flash_purchase(id.as_str(), &customer)?;
        Ok((customer, id, admitted))
    });
    match admission {
        Ok((customer, id, admitted)) => admitted.apply(finish(purchase(req, &customer, &id))),
        Err(refused) => refused.into_response(),
    }
}

fn purchase(req: &Request, customer: &Customer, id: &SaleId) -> HandlerResult {
    let key = shop_adapter::idempotency::required(req, "purchase")?;
    let ticket_id = shop_adapter::ids::sortable_id("tkt_");
    let reservation_id = format!("flash_{}", &ticket_id[4..]);
    // purchase.lua writes the payload, in the step that takes the unit.
    let request = Outgoing::unstored(&Message::filled_by_script::<FlashRequest>(
        FlashOrderRequested::KIND,
        &ticket_id,
        shop_adapter::ids::now_ms(),
    ))
    .map_err(|e| Problem::internal("serialize order request", e))?;
    let ([stream, pending], publish_args) =
        outbox::publish_call(flash::TOPIC, std::slice::from_ref(&request), Ring::Now);
    let (ttl, who) = (PAYMENT_WINDOW_MS.to_string(), customer.as_str());
    let mut args = vec![
        id.as_str(),
        who,
        key.as_str(),
        &ticket_id,
        &reservation_id,
        &ttl,
    ];
    args.push(keys::TICKET_PREFIX);
    args.extend(publish_args.iter().map(|a| a.as_ref()));
    let sid = id.as_str();
    let reply = Store::open()?.run(
        &script(),
        &[
            &keys::sale(sid),
            &keys::sale_keys(sid),
            &keys::sale_buyers(sid),
            &keys::ticket(&ticket_id),
            &keys::reservation(&reservation_id),
            keys::EXPIRIES,
            &keys::sale_pending(sid),
            &stream,
            &pending,
        ],
        &args,
    )?;
    answer(id, &reply)
}

fn script() -> Script {
    Script {
        name: "purchase",
        source: PURCHASE.as_str(),
    }
}

/// purchase.lua's reply as the answer.
fn answer(id: &SaleId, reply: &[String]) -> HandlerResult {
    let bad = || bad_reply(&script(), reply);
    let r: Vec<&str> = reply.iter().map(String::as_str).collect();
    match r.as_slice() {
        ["CREATED", ticket] => Ok(json(
            202,
            &TicketView::new(ticket, id.as_str(), TicketStatus::Pending, "", ""),
        )),
        ["EXISTING", ticket, status, order, reason] => {
            let status = TicketStatus::parse(status).ok_or_else(bad)?;
            let mut resp = json(
                200,
                &TicketView::new(ticket, id.as_str(), status, order, reason),
            );
            resp.set_header("idempotent-replayed", "true");
            Ok(resp)
        }
        ["UNKNOWN"] => Err(crate::cmd::get_sale::not_found(id.as_str())),
        ["NOT_STARTED", at] | ["ENDED", at] => {
            let ended = r[0] == "ENDED";
            let when = at
                .parse::<i64>()
                .ok()
                .map(shop_adapter::ids::rfc3339)
                .unwrap_or_default();
            let detail = match ended {
                true => format!("flash sale {id:?} ended at {when}"),
                false => format!("flash sale {id:?} starts at {when}"),
            };
            Err(
                Problem::new(422, "outside-window", "Outside the sale window", detail)
                    .with("reason", if ended { "ended" } else { "not-started" }),
            )
        }
        ["LIMIT", limit] => Err(Problem::conflict(
            "limit-reached",
            format!(
                "you already have the {limit} unit(s) one buyer may get from flash sale {id:?}"
            ),
        )
        .with("reason", "limit-reached")),
        ["SOLD_OUT"] => Err(Problem::conflict(
            "sold-out",
            format!("flash sale {id:?} is sold out"),
        )
        .with("reason", "sold-out")),
        _ => Err(bad()),
    }
}

//! `POST /api/orders` with `Idempotency-Key`: create an order from catalog prices.
//!
//! 1. Parse: token, key, body, domain rules (empty items, quantities, duplicate SKUs, coupon
//!    shape). Nothing is stored for a request that fails here.
//! 2. Claim the key ([`claims::begin`]): a finished request answers its stored response; a
//!    different body is 422; otherwise the request takes the key's lease in Redis (no SQLite
//!    write): a request holding it is 409 (422 for another body); a lease that ran out (its
//!    holder died) is taken over with the same attempt.
//! 3. Reserve at the stock component with a reservation id derived from key and attempt, so a
//!    retry after a crash reuses the same reservation and never deducts twice. The stock
//!    component refuses unknown SKUs and mixed currencies before anything moves, and snapshots
//!    the prices the order is priced with.
//!    With a `coupon_code`: the coupon is tried (TCC try at the coupon component, behind its own
//!    breaker) with the order id as redemption id. The order id is derived from the claim, so a
//!    retry tries under the same id and the coupon context replays the hold; the discount it
//!    held is priced into the order. A refusal or an unreachable coupon context hands the
//!    reservation back (as in 5.); a hold whose order is never written is cancelled by the
//!    coupon context's sweep (docs/coupons.md).
//! 4. One transaction, the only SQLite write of a new order: the claim completed with the stored
//!    response, order + lines, outbox `OrderCreated`, only if the claim is still ours; then the
//!    message is sent and the lease dropped.
//! 5. If that write fails: record the reservation in `pending_releases` and move the claim to the
//!    next attempt, then release the reservation; if the release fails too, the compensator
//!    finishes it from `pending_releases`; if even the record failed, the sweep finishes it from
//!    the open lease this request leaves (and the stock TTL is the last resort).

use shop_adapter::body::{parse_object, Fields, Incoming};
use shop_adapter::breaker::Breaker;
use shop_adapter::identity::{self, Customer};
use shop_adapter::sqlite::Tx;
use shop_adapter::Problem;
use shop_domain::idempotency::{self, ClaimKey};
use shop_domain::messages::{OrderCreated, OrderEvent, OrderLine};
use shop_domain::new_order::{NewOrder, RawItem};
use shop_domain::placed_order::PlacedOrder;
use shop_domain::pricing;
use shop_domain::{Currency, Money, Sku};
use spin_sdk::http::Response;
use spin_sdk::sqlite::Connection;

use crate::coupon::{self, CouponError};
use crate::db::{self, OrUnavailable};
use crate::settle::{self, Released};
use crate::stock::{self, StockError};
use crate::store::claims::{self, Claim, Next, StoredResponse};
use crate::store::orders;
use crate::store::outbox::{self, Ring};
use crate::store::releases::{self, Reason};
use crate::trace::Trace;
use crate::view::OrderView;
use crate::{guards, ids, problems};

/// How long an order (and its stock reservation) waits for payment.
pub const PAYMENT_WINDOW_SECONDS: u32 = 900;

/// The most a creation body may be: about three times the largest valid one (100 items with
/// 64-character SKUs, a 128-character user id and a coupon code, about 10 KiB).
pub const BODY_LIMIT: usize = 32 * 1024;

/// The response, with the rate limits' headers once the request was admitted.
pub async fn handle(incoming: Incoming) -> Response {
    // 1. Who is asking comes first: an anonymous request learns nothing, not even a 400, and
    // its body is never read. Then the rate limits and the stock breaker, in one round trip.
    let customer = match identity::customer(incoming.head()) {
        Ok(customer) => customer,
        Err(problem) => return problem.into_response(),
    };
    let admitted = guards::stock_breaker().and_then(|stock| {
        let admitted = guards::admit_create(&customer, &stock)?;
        Ok((admitted, stock))
    });
    match admitted {
        Ok((admitted, stock)) => {
            let answer = create(incoming, customer, &stock, admitted.probe).await;
            admitted.apply(shop_adapter::respond::finish(answer))
        }
        Err(problem) => problem.into_response(),
    }
}

/// The stock component's calls go through `stock` (the breaker that admitted the request;
/// `probe`: as its half-open probe).
async fn create(
    incoming: Incoming,
    customer: Customer,
    stock: &Breaker,
    probe: bool,
) -> Result<Response, Problem> {
    let key = shop_adapter::idempotency::required(incoming.head(), "order")?;
    let req = incoming.read(BODY_LIMIT).await?;
    let trace = Trace::of(&req);
    let order = parse_body(req.body(), &customer)?;
    // An order with a coupon also passes the coupon breaker (closed: no coupon call is tried
    // and nothing reserved).
    let coupon = match order.coupon_code {
        Some(_) => {
            let breaker = guards::coupon_breaker()?;
            let probe = guards::admit_coupon(&breaker)?.probe;
            Some(Guarded { breaker, probe })
        }
        None => None,
    };
    // A key is the customer's own: another customer's equal key is another claim.
    let key = ClaimKey::new(customer.id().clone(), key);

    // 2.-5., once more if the sweep gave the claim up while this request held its lease.
    // Everything this request writes lives in the customer's shard: one local transaction.
    let conn = db::open_for(customer.as_str())?;
    let fingerprint = idempotency::fingerprint(&order);
    let guards = Guards {
        stock: Guarded {
            breaker: stock.clone(),
            probe,
        },
        coupon,
    };
    for _ in 0..2 {
        if let Some(done) = place_order(&conn, &key, &fingerprint, &order, &trace, &guards).await? {
            return Ok(done);
        }
    }
    Err(problems::in_progress())
}

/// Steps 2-5 under one claim; `None` when the claim was given up by the sweep while this request
/// held its lease (it owes this attempt's reservation back): the request decides again.
async fn place_order(
    conn: &Connection,
    key: &ClaimKey,
    fingerprint: &str,
    order: &NewOrder,
    trace: &Trace,
    guards: &Guards,
) -> Result<Option<Response>, Problem> {
    // 2. A finished request is answered from its claim, before the catalog is consulted again:
    // a replay must not depend on today's prices or on the stock component being up.
    let mut claim =
        match claims::begin(conn, key, fingerprint).or_unavailable("claim idempotency key")? {
            Next::Proceed(claim) => claim,
            Next::Replay(stored) => return Ok(Some(respond(stored, true))),
            Next::KeyReused => return Err(problems::key_reused()),
            Next::InProgress => return Err(problems::in_progress()),
        };

    // 3. Reserve, then price the order with the reservation's price snapshot.
    let reserved = reserve(conn, &mut claim, order, trace, &guards.stock).await?;
    let placed = place(conn, &claim, order, reserved, trace, guards).await?;

    // 4. Write the order and answer it (and, 5., hand the reservation back if that fails).
    let body = serde_json::to_string(&OrderView::from(&placed))
        .map_err(|e| Problem::internal("serialize order", e))?;
    match write(conn, &claim, &placed, &body, trace) {
        Ok(Some(created)) => {
            // No receiver acts on OrderCreated (the stock is reserved already): it is appended
            // without waking one, and read with the next ring. The same step drops the lease.
            claims::release_publishing(&claim, &[created], Ring::Later);
            Ok(Some(respond(StoredResponse { status: 201, body }, false)))
        }
        // The claim moved on: not ours to release. While our lease holds, only the sweep moves
        // it (it owes this reservation back), so decide again; otherwise a retry took it over
        // after our lease ran out, and owns the reservation.
        Ok(None) => {
            let overtaken_by_sweep = claims::still_held(&claim);
            claims::let_go(&claim);
            match overtaken_by_sweep {
                true => Ok(None),
                false => Err(problems::in_progress()),
            }
        }
        Err(e) => {
            eprintln!("order: writing order {} failed: {e:#}", placed.order_id);
            let (rid, oid) = (&placed.reservation_id, Some(placed.order_id.as_str()));
            Err(problems::write_failed(
                give_back(conn, &claim, rid, oid, trace).await,
            ))
        }
    }
}

/// `{user_id?, items:[{sku, quantity}], coupon_code?}` into a [`NewOrder`] of `customer`.
/// `user_id` defaults to the token's subject; another one is 403: a customer orders for
/// themselves only.
fn parse_body(body: &[u8], customer: &Customer) -> Result<NewOrder, Problem> {
    let map = parse_object(body)?;
    let root = Fields::root(&map);
    let user_id = match root.opt_str("user_id")? {
        Some(u) if !customer.owns(u) => return Err(problems::forbidden_user()),
        _ => customer.as_str(),
    };
    let items = root.objects("items")?;
    let mut raw = Vec::with_capacity(items.len());
    for item in &items {
        raw.push(RawItem {
            sku: item.str("sku")?,
            quantity: item.i64("quantity")?,
        });
    }
    let coupon_code = root.opt_str("coupon_code")?;
    NewOrder::parse(user_id, &raw, coupon_code).map_err(|e| {
        let p = Problem::unprocessable(&e.field, e.detail);
        if e.field == "items" && raw.is_empty() {
            p.with("reason", "empty-items")
        } else {
            p
        }
    })
}

/// A breaker the calls of one request go through.
struct Guarded {
    breaker: Breaker,
    /// The request was admitted as the breaker's half-open probe.
    probe: bool,
}

/// The stock calls' breaker, and the coupon try's when the order has a coupon.
struct Guards {
    stock: Guarded,
    coupon: Option<Guarded>,
}

/// Unit prices from the reservation snapshot, falling back to the catalog read.
fn snapshot_prices(order: &NewOrder, reserved: &[stock::ReservedItem]) -> Vec<(Sku, Money)> {
    order
        .items
        .iter()
        .filter_map(|item| {
            let r = reserved.iter().find(|r| r.sku == item.sku.as_str())?;
            let currency = Currency::parse(r.currency.as_deref()?).ok()?;
            let price = Money::new(r.unit_price?, currency).ok()?;
            Some((item.sku.clone(), price))
        })
        .collect()
}

/// A refusal that is the request's own mistake (unknown SKU, mixed currencies, items the stock
/// component refuses), not a state of the shop.
fn is_catalog_refusal(e: &StockError) -> bool {
    matches!(e, StockError::NotFound(_) | StockError::Rejected(..))
}

/// Step 3: reserves under the claim's attempt (`claim.key.reservation_id(claim.attempt)`).
/// A refusal gives the claim up, or deletes a claim this request made for its own mistake.
async fn reserve(
    conn: &Connection,
    claim: &mut Claim,
    order: &NewOrder,
    trace: &Trace,
    guard: &Guarded,
) -> Result<stock::Reservation, Problem> {
    let items: Vec<(String, u32)> = order
        .items
        .iter()
        .map(|i| (i.sku.as_str().to_owned(), i.quantity.get()))
        .collect();
    let mut tries = 0;
    loop {
        let reservation_id = claim.key.reservation_id(claim.attempt);
        let tp = trace.traceparent();
        let customer = order.user_id.as_str();
        let call = stock::reserve(
            customer,
            &reservation_id,
            &items,
            PAYMENT_WINDOW_SECONDS,
            tp,
        );
        // Only the first call of a half-open request is the probe.
        let probe = guard.probe && tries == 0;
        let refused = match guards::guarded(&guard.breaker, probe, call).await {
            Ok(reserved) => return Ok(reserved),
            Err(e) => e,
        };
        match refused {
            // A retaken claim whose reservation was meanwhile released (it expired, or the
            // compensator gave it up): move on to the next attempt's reservation right away.
            StockError::Settled(status) if tries < 2 => {
                eprintln!("order: reservation {reservation_id} is {status}; next attempt");
                tries += 1;
                if !claims::next_attempt(claim).or_unavailable("move idempotency lease")? {
                    return Err(problems::in_progress());
                }
            }
            // The request names SKUs that do not exist or mixes currencies: a mistake in the
            // request, found by the one stock call (there is no catalog read before it). Like a
            // validation error it leaves nothing behind: a claim this request made is deleted,
            // so the same key can be used again once the request is fixed.
            e if claim.fresh() && is_catalog_refusal(&e) => {
                claims::release(claim);
                return Err(problems::reserve_refused(order, e));
            }
            // Not enough stock, refused: nothing was reserved under this id, and the stock
            // component may remember the refusal for it, so the next try uses a new id.
            // Unreachable: the reservation may or may not exist, so a retry reuses the same id
            // (idempotent at the stock component), and if no retry comes, the reservation's TTL
            // gives the stock back.
            e => {
                let next = match e {
                    // Nothing was reserved under this id when refused by a limit either.
                    StockError::Unavailable(_) | StockError::Limited(_) => claim.attempt,
                    _ => claim.attempt + 1,
                };
                if let Err(e) = claims::fail(conn, claim, next, ids::now_ms()) {
                    eprintln!("order: could not record the failed claim: {e:#}");
                }
                claims::release(claim);
                return Err(problems::reserve_refused(order, e));
            }
        }
    }
}

/// Step 3, pricing: the placed order, priced with the prices the stock component snapshotted
/// in the same atomic step that reserved the units, and with its coupon's discount. A refusal
/// hands the reservation back.
async fn place(
    conn: &Connection,
    claim: &Claim,
    order: &NewOrder,
    reserved: stock::Reservation,
    trace: &Trace,
    guards: &Guards,
) -> Result<PlacedOrder, Problem> {
    let reservation_id = claim.key.reservation_id(claim.attempt);
    // The same for every attempt of the claim: it is the coupon's redemption id.
    let order_id = claim.key.order_id();
    let priced =
        pricing::price(order, &snapshot_prices(order, &reserved.items)).map_err(problems::pricing);
    let priced = match priced {
        Ok(priced) => discounted(order, &order_id, priced, trace, guards).await,
        Err(problem) => Err(problem),
    };
    let priced = match priced {
        Ok(priced) => priced,
        Err(problem) => {
            give_back(conn, claim, &reservation_id, None, trace).await;
            return Err(problem);
        }
    };
    let now = ids::now_ms();
    // The payment deadline is the reservation's own expiry: one clock decides both.
    let window_ms = i64::from(PAYMENT_WINDOW_SECONDS) * 1000;
    let expires_ms = reserved.expires_ms.unwrap_or(now + window_ms);
    let placed = PlacedOrder::place(order_id, order, priced, reservation_id, now, expires_ms);
    Ok(placed)
}

/// `priced` with its coupon's discount: the coupon tried under the order id for the order's
/// subtotal (behind the coupon breaker). Without a coupon, `priced` as it is.
async fn discounted(
    order: &NewOrder,
    order_id: &str,
    priced: pricing::PricedOrder,
    trace: &Trace,
    guards: &Guards,
) -> Result<pricing::PricedOrder, Problem> {
    let (Some(code), Some(guard)) = (&order.coupon_code, &guards.coupon) else {
        return Ok(priced);
    };
    let timeout_ms = guard.breaker.config.timeout_ms;
    let user = order.user_id.as_str();
    let tp = trace.traceparent();
    let call = coupon::try_hold(
        code.as_str(),
        order_id,
        user,
        priced.subtotal,
        timeout_ms,
        tp,
    );
    match guards::guarded(&guard.breaker, guard.probe, call).await {
        Ok(discount) => pricing::with_discount(priced, discount).map_err(|e| {
            eprintln!(
                "order: coupon {} held a discount the order cannot take: {e}",
                code.as_str()
            );
            problems::coupon_refused(CouponError::Unavailable(e.to_string()))
        }),
        Err(e) => Err(problems::coupon_refused(e)),
    }
}

/// Step 4: the claim completed with the response, order, lines and outbox message in one
/// transaction; the message to send, or `None` when the claim is no longer ours (nothing
/// written).
fn write(
    conn: &Connection,
    claim: &Claim,
    placed: &PlacedOrder,
    body: &str,
    trace: &Trace,
) -> anyhow::Result<Option<outbox::Outgoing>> {
    let tx = Tx::begin(conn)?;
    if !claims::complete(conn, claim, body, &placed.order_id, placed.created_ms)? {
        // Nothing written: ending the transaction either way is the same (committed here).
        tx.commit()?;
        return Ok(None);
    }
    orders::insert(conn, placed, &claim.key)?;
    let message = outbox::Message::new(
        &created(placed)?,
        &placed.order_id,
        trace.trace_id(),
        placed.created_ms,
    )?;
    let created = outbox::append_outgoing(conn, &message)?;
    tx.commit()?;
    Ok(Some(created))
}

/// `OrderCreated`: the order as its view shows it, with its reservation.
fn created(placed: &PlacedOrder) -> anyhow::Result<OrderEvent> {
    let view = OrderView::from(placed);
    let lines = view.items.into_iter().map(|l| OrderLine {
        sku: l.sku,
        quantity: l.quantity,
        unit_price: l.unit_price,
        line_total: l.line_total,
    });
    Ok(OrderEvent::OrderCreated(OrderCreated {
        order_id: view.order_id,
        user_id: placed.user_id.clone(),
        status: placed.status(),
        items: lines.collect(),
        subtotal: view.subtotal,
        discount: view.discount,
        total: view.total,
        currency: placed.currency,
        coupon_code: placed.coupon_code.clone(),
        created_at: view.created_at,
        expires_at: view.expires_at,
        version: view.version,
        reservation_id: crate::store::orders::reservation_id(placed)?,
    }))
}

/// Step 5: hand the reservation back. First make it durable that it must be released and that
/// this key's next try needs a new reservation id (one transaction, if the database still takes
/// writes), then call the stock component. Returns whether the release is done.
async fn give_back(
    conn: &Connection,
    claim: &Claim,
    reservation_id: &str,
    order_id: Option<&str>,
    trace: &Trace,
) -> bool {
    let now = ids::now_ms();
    // Only while the claim is ours: one that was taken over (we stalled past the lease) may
    // have an order written on this very reservation by the request that took it.
    let recorded = (|| -> anyhow::Result<Option<String>> {
        let tx = Tx::begin(conn)?;
        if !claims::fail(conn, claim, claim.attempt + 1, now)? {
            tx.commit()?; // nothing written: see `write`
            return Ok(None);
        }
        let reason = Reason::OrderWriteFailed;
        let message_id = releases::owe(conn, reservation_id, order_id, reason, now)?;
        tx.commit()?;
        Ok(Some(message_id))
    })();
    match &recorded {
        Ok(Some(message_id)) => outbox::publish(conn, std::slice::from_ref(message_id), Ring::Now),
        Ok(None) => {
            eprintln!("order: claim lost before giving {reservation_id} back: not ours to release");
            claims::let_go(claim);
            return false;
        }
        // Not recorded (the database refuses writes): release only while the lease shows the
        // claim is still ours.
        Err(e) if !claims::still_held(claim) => {
            eprintln!("order: could not record the release of {reservation_id} ({e:#}) and the lease is no longer ours: left to the sweep");
            return false;
        }
        Err(e) => eprintln!("order: could not record pending release of {reservation_id}: {e:#}"),
    }
    let released = !matches!(
        settle::release(conn, reservation_id, trace.traceparent()).await,
        Released::Failed
    );
    // With neither a record nor the release done, the open lease is what is left for the
    // sweep to finish: keep it (the lease itself runs out, so the client can retry).
    if recorded.is_ok() || released {
        claims::release(claim);
    }
    released
}

/// A response to answer now or again: `idempotent-replayed` when it is a stored one.
fn respond(stored: StoredResponse, replayed: bool) -> Response {
    let content_type = if stored.status >= 400 {
        "application/problem+json"
    } else {
        "application/json"
    };
    let mut b = Response::builder();
    b.status(stored.status).header("content-type", content_type);
    if replayed {
        b.header("idempotent-replayed", "true");
    }
    b.body(stored.body).build()
}

// The lease only needs to exceed one request's duration, and must be far below the reservation
// TTL so a retaken claim still finds its reservation alive: checked at compile time.
const _: () = assert!(claims::LEASE_MS < PAYMENT_WINDOW_SECONDS as i64 * 1000);

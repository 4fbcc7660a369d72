//! `POST /api/orders` with `Idempotency-Key`: create an order from catalog prices.
//!
//! 1. Parse: key, body, domain rules (empty items, quantities, duplicate SKUs, coupon shape).
//!    Nothing is stored for a request that fails here.
//! 2. Look up each SKU at the stock component: an unknown SKU or mixed currencies are refused
//!    before anything is reserved.
//! 3. Claim the key in SQLite (one `BEGIN IMMEDIATE` transaction): a new key is claimed
//!    `in-progress` with the request fingerprint; a finished one answers its stored response; a
//!    running one is 409; a different body is 422; an abandoned claim (older than the lease) is
//!    taken over with the same attempt.
//! 4. Reserve at the stock component with a reservation id derived from key and attempt, so a
//!    retry after a crash reuses the same reservation and never deducts twice.
//! 5. One transaction: order + lines + outbox `OrderCreated` + the stored response, only if the
//!    claim is still ours.
//! 6. If that write fails: record the reservation in `pending_releases` and move the claim to the
//!    next attempt, then release the reservation; if the release fails too, the compensator
//!    finishes it from `pending_releases` (and the stock TTL is the last resort).

use serde_json::json;
use shop_adapter::body::{parse_object, Fields};
use shop_adapter::identity::{self, Customer};
use shop_adapter::sqlite::{changes, text_or_null, Tx};
use shop_adapter::Problem;
use shop_domain::idempotency::{self, ClaimState, Decision, IdempotencyKey, StoredClaim};
use shop_domain::new_order::{NewOrder, RawItem};
use shop_domain::pricing::{self, PricedOrder, PricingError};
use shop_domain::{Currency, Money, Sku};
use spin_sdk::http::{Request, Response};
use spin_sdk::sqlite::Connection;

use crate::db::{self, col_i64, col_opt_str, col_str, int, text};
use crate::ids;
use crate::outbox;
use crate::stock::{self, StockError};
use crate::view::{LineView, OrderView};

/// How long an order (and its stock reservation) waits for payment.
pub const PAYMENT_WINDOW_SECONDS: u32 = 900;

/// A claim not completed within this time is considered abandoned by a crashed instance. It is
/// far longer than any request (which is bounded by the host's timeouts), so a live holder is
/// never overtaken.
pub const CLAIM_LEASE_MS: i64 = 60_000;

pub async fn handle(req: &Request) -> Result<Response, Problem> {
    // Who is asking comes first: an anonymous request learns nothing, not even a 400.
    let customer = identity::customer(req)?;
    let key = idempotency_key(req)?;
    let traceparent = req
        .header("traceparent")
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    let trace_id = traceparent
        .as_deref()
        .and_then(shop_domain::trace::trace_id);
    let tp = trace_id.as_ref().and(traceparent.as_deref());
    let order = parse_body(req.body(), &customer)?;
    let fingerprint = idempotency::fingerprint(&order);

    let conn = db::open()?;
    // A finished request is answered before the catalog is consulted again: a replay must not
    // depend on today's prices or on the stock component being up.
    if let Some(resp) = replay_if_completed(&conn, &key, &fingerprint)? {
        return Ok(resp);
    }

    let claim = claim(&conn, &key, &fingerprint)?;
    let (mut attempt, token, fresh) = match claim {
        Claimed::Proceed {
            attempt,
            token,
            fresh,
        } => (attempt, token, fresh),
        Claimed::Answer(resp) => return Ok(resp),
    };
    let items: Vec<(String, u32)> = order
        .items
        .iter()
        .map(|i| (i.sku.as_str().to_owned(), i.quantity.get()))
        .collect();

    let mut tries = 0;
    let (reservation_id, reserved) = loop {
        let reservation_id = key.reservation_id(attempt);
        match stock::reserve(&reservation_id, &items, PAYMENT_WINDOW_SECONDS, tp).await {
            Ok(r) => break (reservation_id, r),
            // A retaken claim whose reservation was meanwhile released (it expired, or the
            // compensator gave it up): move on to the next attempt's reservation right away.
            Err(StockError::Settled(status)) if tries < 2 => {
                eprintln!("order: reservation {reservation_id} is {status}; next attempt");
                tries += 1;
                attempt += 1;
                if !move_attempt(&conn, &key, &token, attempt)? {
                    return Err(in_progress());
                }
            }
            // The request names SKUs that do not exist or mixes currencies: a mistake in the
            // request, found by the one stock call (there is no catalog read before it). Like a
            // validation error it leaves nothing behind: a claim this request made is deleted,
            // so the same key can be used again once the request is fixed.
            Err(e) if fresh && is_catalog_refusal(&e) => {
                let _ = forget_claim(&conn, &key, &token);
                return Err(reserve_problem(&order, e));
            }
            Err(e) => {
                // Not enough stock, unknown SKU, refused: nothing was reserved under this id,
                // and the stock component may remember the refusal for it, so the next try uses
                // a new id. Unreachable: the reservation may or may not exist, so a retry reuses
                // the same id (idempotent at the stock component), and if no retry comes, the
                // reservation's TTL gives the stock back.
                let next_attempt = match e {
                    StockError::Unavailable(_) => attempt,
                    _ => attempt + 1,
                };
                let _ = fail_claim(&conn, &key, &token, next_attempt);
                return Err(reserve_problem(&order, e));
            }
        }
    };

    // Prices come from the reservation's snapshot: the catalog's, taken in the same atomic step
    // that reserved the units.
    let snapshot = snapshot_prices(&order, &reserved.items);
    let priced = match pricing::price(&order, &snapshot) {
        Ok(p) => p,
        Err(e) => {
            release_after_failure(&conn, &key, &token, attempt, &reservation_id, None, tp).await;
            return Err(pricing_problem(e));
        }
    };

    let now = ids::now_ms();
    // The payment deadline is the reservation's own expiry: one clock decides both.
    let expires_ms = reserved
        .expires_ms
        .unwrap_or(now + i64::from(PAYMENT_WINDOW_SECONDS) * 1000);
    let order_id = ids::random_id("ord_");
    let view = order_view(&order_id, &order, &priced, now, expires_ms);
    let body = serde_json::to_string(&view).map_err(|e| Problem::internal("serialize order", e))?;
    let write = NewOrderRow {
        key: &key,
        token: &token,
        reservation_id: &reservation_id,
        view: &view,
        body: &body,
        created_ms: now,
        expires_ms,
        trace_id: trace_id.as_deref(),
    };
    match write_order(&conn, &write) {
        Ok(WriteOutcome::Written(message_id)) => {
            outbox::publish(&conn, &[message_id]);
            Ok(created(body, false))
        }
        Ok(WriteOutcome::ClaimLost) => {
            // Another request took the claim over (we were slower than the lease): it owns the
            // reservation now, so it must not be released here.
            Err(in_progress())
        }
        Err(e) => {
            eprintln!("order: writing order {order_id} failed: {e:#}");
            let released = release_after_failure(
                &conn,
                &key,
                &token,
                attempt,
                &reservation_id,
                Some(&order_id),
                tp,
            )
            .await;
            Err(Problem::unavailable(if released {
                "the order could not be stored; its stock reservation was released, retry with the same Idempotency-Key"
            } else {
                "the order could not be stored; its stock reservation will be released, retry with the same Idempotency-Key"
            })
            .with("reservation_released", released))
        }
    }
}

/// `Idempotency-Key`: required, 1-255 visible ASCII characters.
fn idempotency_key(req: &Request) -> Result<IdempotencyKey, Problem> {
    let raw = req.header("idempotency-key").ok_or_else(|| {
        Problem::bad_request(
            "Idempotency-Key",
            "the Idempotency-Key header is required: a unique value per order, reused on retries",
        )
    })?;
    let s = raw.as_str().ok_or_else(|| {
        Problem::bad_request("Idempotency-Key", "Idempotency-Key must be visible ASCII")
    })?;
    IdempotencyKey::parse(s).map_err(|e| Problem::bad_request("Idempotency-Key", e.to_string()))
}

/// `{user_id?, items:[{sku, quantity}], coupon_code?}` into a [`NewOrder`] of `customer`.
/// `user_id` defaults to the token's subject; another one is 403: a customer orders for
/// themselves only.
fn parse_body(body: &[u8], customer: &Customer) -> Result<NewOrder, Problem> {
    let map = parse_object(body)?;
    let root = Fields::root(&map);
    let user_id = match root.opt_str("user_id")? {
        Some(u) if !customer.owns(u) => {
            return Err(Problem::new(
                403,
                "forbidden",
                "Forbidden",
                "user_id must be the customer the bearer token names (or be left out)",
            )
            .with_field("user_id"))
        }
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

/// 422 `mixed-currencies` naming the SKUs: one order is paid in one currency.
fn mixed_currencies(skus: Vec<String>) -> Problem {
    Problem::new(
        422,
        "mixed-currencies",
        "Mixed currencies",
        format!(
            "the items are priced in more than one currency: {}",
            skus.join(", ")
        ),
    )
    .with_field("items")
    .with("skus", skus)
}

fn pricing_problem(e: PricingError) -> Problem {
    match &e {
        PricingError::MixedCurrencies { skus } => {
            mixed_currencies(skus.iter().map(|s| s.as_str().to_owned()).collect())
        }
        PricingError::MissingPrice { index, sku } => Problem::new(
            422,
            "unknown-sku",
            "Unknown SKU",
            format!("no product with sku {sku}"),
        )
        .with_field(format!("items[{index}].sku"))
        .with("skus", [sku.as_str()]),
        PricingError::Overflow => Problem::unprocessable("items", e.to_string()),
    }
}

fn reserve_problem(order: &NewOrder, e: StockError) -> Problem {
    match e {
        StockError::Conflict(body) => {
            let skus = stock::short_skus(&body);
            let field = skus
                .first()
                .and_then(|s| Sku::parse(s).ok())
                .and_then(|s| order.index_of(&s))
                .map(|i| format!("items[{i}].quantity"))
                .unwrap_or_else(|| "items".to_owned());
            Problem::conflict(
                "insufficient-stock",
                "not enough stock for the requested quantities",
            )
            .with_field(field)
            .with("skus", skus)
        }
        StockError::NotFound(body) => {
            let skus: Vec<String> = match body["sku"].as_str() {
                Some(s) => vec![s.to_owned()],
                None => stock::short_skus(&body),
            };
            let field = skus
                .first()
                .and_then(|s| Sku::parse(s).ok())
                .and_then(|s| order.index_of(&s))
                .map(|i| format!("items[{i}].sku"))
                .unwrap_or_else(|| "items".to_owned());
            Problem::new(
                422,
                "unknown-sku",
                "Unknown SKU",
                "a requested sku does not exist",
            )
            .with_field(field)
            .with("skus", skus)
        }
        StockError::Rejected(_, body)
            if body["type"]
                .as_str()
                .is_some_and(|t| t.ends_with("/mixed-currencies")) =>
        {
            mixed_currencies(stock::short_skus(&body))
        }
        StockError::Rejected(status, body) => {
            eprintln!("order: stock refused the reservation ({status}): {body}");
            let field = body["field"].as_str().unwrap_or("items").to_owned();
            let detail = body["detail"]
                .as_str()
                .unwrap_or("the stock component refused the items")
                .to_owned();
            Problem::unprocessable(&field, detail)
        }
        StockError::Settled(status) => Problem::conflict(
            "reservation-settled",
            format!("the stock reservation of this request is already {status}; retry with the same Idempotency-Key"),
        ),
        StockError::Unavailable(e) => {
            eprintln!("order: reservation failed: {e}");
            Problem::unavailable(
                "the stock component is unavailable; retry with the same Idempotency-Key",
            )
        }
    }
}

fn order_view(
    order_id: &str,
    order: &NewOrder,
    priced: &PricedOrder,
    now: i64,
    expires_ms: i64,
) -> OrderView {
    OrderView {
        order_id: order_id.to_owned(),
        user_id: order.user_id.as_str().to_owned(),
        status: shop_domain::order::OrderStatus::PendingPayment
            .as_str()
            .to_owned(),
        items: priced
            .lines
            .iter()
            .map(|l| LineView {
                sku: l.sku.as_str().to_owned(),
                quantity: i64::from(l.quantity.get()),
                unit_price: l.unit_price.minor(),
                line_total: l.line_total.minor(),
            })
            .collect(),
        subtotal: priced.subtotal.minor(),
        discount: priced.discount.minor(),
        total: priced.total.minor(),
        currency: priced.currency.as_str().to_owned(),
        coupon_code: order.coupon_code.as_ref().map(|c| c.as_str().to_owned()),
        created_at: ids::rfc3339(now),
        expires_at: ids::rfc3339(expires_ms),
        version: shop_domain::order::OrderState::new().version,
    }
}

fn created(body: String, replayed: bool) -> Response {
    stored_response(201, body, replayed)
}

fn stored_response(status: u16, body: String, replayed: bool) -> Response {
    let mut b = Response::builder();
    b.status(status).header(
        "content-type",
        if status >= 400 {
            "application/problem+json"
        } else {
            "application/json"
        },
    );
    if replayed {
        b.header("idempotent-replayed", "true");
    }
    b.body(body).build()
}

fn in_progress() -> Problem {
    Problem::conflict(
        "request-in-progress",
        "a request with this Idempotency-Key is still being processed; retry later",
    )
    .with_field("Idempotency-Key")
}

fn key_reused() -> Problem {
    Problem::new(
        422,
        "idempotency-key-reused",
        "Idempotency-Key reused",
        "this Idempotency-Key was used for a different request body",
    )
    .with_field("Idempotency-Key")
}

/// A stored claim and, once completed, its response (status, body).
type ClaimRow = (StoredClaim, Option<(u16, String)>);

enum Claimed {
    /// Go on under `attempt`; `fresh` when this request created the claim (no earlier try).
    Proceed {
        attempt: i64,
        token: String,
        fresh: bool,
    },
    Answer(Response),
}

fn read_claim(conn: &Connection, key: &IdempotencyKey) -> Result<Option<ClaimRow>, Problem> {
    let rows = conn
        .execute(
            "SELECT fingerprint, state, attempt, claimed_ms, response_status, response_body
             FROM idempotency_keys WHERE idem_key = ?",
            &[text(key.as_str())],
        )
        .map_err(|e| db::unavailable("read idempotency key", e))?;
    Ok(rows.rows.first().map(|r| {
        let claim = StoredClaim {
            fingerprint: col_str(r, 0),
            state: ClaimState::parse(&col_str(r, 1)).unwrap_or(ClaimState::InProgress),
            attempt: col_i64(r, 2),
            claimed_at_ms: col_i64(r, 3),
        };
        let stored = match (r.get::<i64>(4), col_opt_str(r, 5)) {
            (Some(s), Some(b)) => Some((u16::try_from(s).unwrap_or(500), b)),
            _ => None,
        };
        (claim, stored)
    }))
}

/// Answers from the stored claim when it already decides the request (done, other body).
fn replay_if_completed(
    conn: &Connection,
    key: &IdempotencyKey,
    fingerprint: &str,
) -> Result<Option<Response>, Problem> {
    match read_claim(conn, key)? {
        Some((claim, _)) if claim.fingerprint != fingerprint => Err(key_reused()),
        Some((claim, Some((status, body)))) if claim.state == ClaimState::Completed => {
            Ok(Some(stored_response(status, body, true)))
        }
        _ => Ok(None),
    }
}

/// Step 3: read and claim the key in one write transaction.
fn claim(conn: &Connection, key: &IdempotencyKey, fingerprint: &str) -> Result<Claimed, Problem> {
    let tx = Tx::begin(conn).map_err(|e| db::unavailable("claim idempotency key", e))?;
    let stored = read_claim(conn, key)?;
    let now = ids::now_ms();
    let decision = idempotency::decide(
        stored.as_ref().map(|(c, _)| c),
        fingerprint,
        now,
        CLAIM_LEASE_MS,
    );
    let token = ids::random_id("clm_");
    let fresh = decision == Decision::ClaimNew;
    let attempt = match decision {
        Decision::KeyReused => return Err(key_reused()),
        Decision::InProgress => return Err(in_progress()),
        Decision::Replay => {
            let (status, body) = stored
                .and_then(|(_, s)| s)
                .ok_or_else(|| Problem::internal("replay", "completed claim without response"))?;
            return Ok(Claimed::Answer(stored_response(status, body, true)));
        }
        Decision::ClaimNew => {
            conn.execute(
                "INSERT INTO idempotency_keys (idem_key, fingerprint, state, attempt, claim_token, claimed_ms, updated_ms)
                 VALUES (?, ?, 'in-progress', 0, ?, ?, ?)",
                &[text(key.as_str()), text(fingerprint), text(&token), int(now), int(now)],
            )
            .map_err(|e| db::unavailable("claim idempotency key", e))?;
            0
        }
        Decision::Retake { attempt } | Decision::Retry { attempt } => {
            conn.execute(
                "UPDATE idempotency_keys SET state = 'in-progress', attempt = ?, claim_token = ?, claimed_ms = ?, updated_ms = ?
                 WHERE idem_key = ?",
                &[int(attempt), text(&token), int(now), int(now), text(key.as_str())],
            )
            .map_err(|e| db::unavailable("claim idempotency key", e))?;
            attempt
        }
    };
    tx.commit()
        .map_err(|e| db::unavailable("claim idempotency key", e))?;
    Ok(Claimed::Proceed {
        attempt,
        token,
        fresh,
    })
}

/// Deletes a claim this request created (only if still ours and in progress): the request was
/// refused as a client mistake, which stores nothing.
fn forget_claim(conn: &Connection, key: &IdempotencyKey, token: &str) -> anyhow::Result<()> {
    conn.execute(
        "DELETE FROM idempotency_keys WHERE idem_key = ? AND claim_token = ? AND state = 'in-progress'",
        &[text(key.as_str()), text(token)],
    )?;
    Ok(())
}

/// Gives the claim up (only if still ours): the same request may try again with `next_attempt`.
fn fail_claim(
    conn: &Connection,
    key: &IdempotencyKey,
    token: &str,
    next_attempt: i64,
) -> anyhow::Result<()> {
    conn.execute(
        "UPDATE idempotency_keys SET state = 'failed', attempt = ?, updated_ms = ?
         WHERE idem_key = ? AND claim_token = ? AND state = 'in-progress'",
        &[
            int(next_attempt),
            int(ids::now_ms()),
            text(key.as_str()),
            text(token),
        ],
    )?;
    Ok(())
}

/// Moves our claim to `attempt` (a new reservation id); `false` if the claim is no longer ours.
fn move_attempt(
    conn: &Connection,
    key: &IdempotencyKey,
    token: &str,
    attempt: i64,
) -> Result<bool, Problem> {
    let moved = conn
        .execute(
            "UPDATE idempotency_keys SET attempt = ?, updated_ms = ?
             WHERE idem_key = ? AND claim_token = ? AND state = 'in-progress'",
            &[
                int(attempt),
                int(ids::now_ms()),
                text(key.as_str()),
                text(token),
            ],
        )
        .and_then(|_| conn.execute("SELECT changes()", &[]))
        .map_err(|e| db::unavailable("update idempotency claim", e))?;
    Ok(moved.rows.first().and_then(|r| r.get::<i64>(0)) == Some(1))
}

struct NewOrderRow<'a> {
    key: &'a IdempotencyKey,
    token: &'a str,
    reservation_id: &'a str,
    view: &'a OrderView,
    body: &'a str,
    created_ms: i64,
    expires_ms: i64,
    trace_id: Option<&'a str>,
}

enum WriteOutcome {
    /// Written, with the id of its `OrderCreated` message.
    Written(String),
    ClaimLost,
}

/// Step 5: order, lines, outbox message and the stored response in one transaction.
fn write_order(conn: &Connection, w: &NewOrderRow<'_>) -> anyhow::Result<WriteOutcome> {
    let tx = Tx::begin(conn)?;
    let v = w.view;
    conn.execute(
        "UPDATE idempotency_keys SET state = 'completed', response_status = 201, response_body = ?, order_id = ?, updated_ms = ?
         WHERE idem_key = ? AND claim_token = ? AND state = 'in-progress'",
        &[text(w.body), text(&v.order_id), int(w.created_ms), text(w.key.as_str()), text(w.token)],
    )?;
    if changes(conn)? != 1 {
        tx.rollback();
        return Ok(WriteOutcome::ClaimLost);
    }
    let expires_ms = w.expires_ms;
    conn.execute(
        "INSERT INTO orders (order_id, user_id, status, currency, subtotal, discount, total, coupon_code,
                             idempotency_key, reservation_id, created_ms, expires_ms, updated_ms, version)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        &[
            text(&v.order_id),
            text(&v.user_id),
            text(&v.status),
            text(&v.currency),
            int(v.subtotal),
            int(v.discount),
            int(v.total),
            text_or_null(v.coupon_code.as_deref()),
            text(w.key.as_str()),
            text(w.reservation_id),
            int(w.created_ms),
            int(expires_ms),
            int(w.created_ms),
            int(v.version),
        ],
    )?;
    for (line_no, line) in v.items.iter().enumerate() {
        conn.execute(
            "INSERT INTO order_lines (order_id, line_no, sku, quantity, unit_price, line_total)
             VALUES (?, ?, ?, ?, ?, ?)",
            &[
                text(&v.order_id),
                int(line_no as i64),
                text(&line.sku),
                int(line.quantity),
                int(line.unit_price),
                int(line.line_total),
            ],
        )?;
    }
    let mut payload = serde_json::to_value(v)?;
    payload["reservation_id"] = json!(w.reservation_id);
    let message_id = outbox::append(
        conn,
        &outbox::Message {
            kind: "OrderCreated",
            aggregate_id: &v.order_id,
            payload: &payload,
            trace_id: w.trace_id,
            now_ms: w.created_ms,
        },
    )?;
    tx.commit()?;
    Ok(WriteOutcome::Written(message_id))
}

/// Step 6: hand the reservation back. First make it durable that it must be released and that
/// this key's next try needs a new reservation id (one transaction, if the database still takes
/// writes), then call the stock component. Returns whether the release is done.
async fn release_after_failure(
    conn: &Connection,
    key: &IdempotencyKey,
    token: &str,
    attempt: i64,
    reservation_id: &str,
    order_id: Option<&str>,
    tp: Option<&str>,
) -> bool {
    let now = ids::now_ms();
    let recorded = (|| -> anyhow::Result<String> {
        let tx = Tx::begin(conn)?;
        let message_id =
            crate::releases::owe(conn, reservation_id, order_id, "order-write-failed", now)?;
        fail_claim(conn, key, token, attempt + 1)?;
        tx.commit()?;
        Ok(message_id)
    })();
    match &recorded {
        Ok(message_id) => outbox::publish(conn, std::slice::from_ref(message_id)),
        Err(e) => eprintln!("order: could not record pending release of {reservation_id}: {e:#}"),
    }
    match stock::release(reservation_id, tp).await {
        Ok(()) => {
            let _ = conn.execute(
                "UPDATE pending_releases SET released_ms = ? WHERE reservation_id = ?",
                &[int(ids::now_ms()), text(reservation_id)],
            );
            true
        }
        Err(e) => {
            eprintln!("order: releasing {reservation_id} failed, left to the compensator: {e}");
            let _ = conn.execute(
                "UPDATE pending_releases SET attempts = attempts + 1, last_error = ? WHERE reservation_id = ?",
                &[text(e.to_string()), text(reservation_id)],
            );
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_outlasts_the_payment_window_never() {
        // The lease only needs to exceed one request's duration, and must be far below the
        // reservation TTL so a retaken claim still finds its reservation alive.
        assert!(CLAIM_LEASE_MS < i64::from(PAYMENT_WINDOW_SECONDS) * 1000);
    }
}

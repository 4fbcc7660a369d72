//! Every problem the order component answers with, built in one place per kind, and the
//! mapping of domain and stock refusals onto them.

use shop_adapter::Problem;
use shop_domain::new_order::NewOrder;
use shop_domain::order::{OrderStatus, TransitionRefused};
use shop_domain::pricing::PricingError;
use shop_domain::Sku;

use crate::coupon::CouponError;
use crate::stock::{self, StockError};

/// 404: no such order, or not one the caller may see (order ids cannot be probed).
pub fn order_not_found(order_id: &str) -> Problem {
    Problem::not_found(format!("no order with id {order_id}"))
}

/// 403: a customer orders for themselves only.
pub fn forbidden_user() -> Problem {
    Problem::new(
        403,
        "forbidden",
        "Forbidden",
        "user_id must be the customer the bearer token names (or be left out)",
    )
    .with_field("user_id")
}

/// 422 `unknown-sku` naming the SKUs and the field of the first.
pub fn unknown_sku(field: String, skus: Vec<String>, detail: String) -> Problem {
    Problem::new(422, "unknown-sku", "Unknown SKU", detail)
        .with_field(field)
        .with("skus", skus)
}

/// 422 `mixed-currencies` naming the SKUs: one order is paid in one currency.
pub fn mixed_currencies(skus: Vec<String>) -> Problem {
    let detail = format!(
        "the items are priced in more than one currency: {}",
        skus.join(", ")
    );
    Problem::new(422, "mixed-currencies", "Mixed currencies", detail)
        .with_field("items")
        .with("skus", skus)
}

/// 409 `insufficient-stock` naming the SKUs short of stock.
pub fn insufficient_stock(field: String, skus: Vec<String>) -> Problem {
    Problem::conflict(
        "insufficient-stock",
        "not enough stock for the requested quantities",
    )
    .with_field(field)
    .with("skus", skus)
}

/// 409 `request-in-progress`: the same key is being worked on.
pub fn in_progress() -> Problem {
    Problem::conflict(
        "request-in-progress",
        "a request with this Idempotency-Key is still being processed; retry later",
    )
    .with_field("Idempotency-Key")
}

/// 422 `idempotency-key-reused`: the key belongs to another request body.
pub fn key_reused() -> Problem {
    Problem::new(
        422,
        "idempotency-key-reused",
        "Idempotency-Key reused",
        "this Idempotency-Key was used for a different request body",
    )
    .with_field("Idempotency-Key")
}

/// 503 after a failed order write, saying whether the reservation is already back.
pub fn write_failed(released: bool) -> Problem {
    Problem::unavailable(if released {
        "the order could not be stored; its stock reservation was released, retry with the same Idempotency-Key"
    } else {
        "the order could not be stored; its stock reservation will be released, retry with the same Idempotency-Key"
    })
    .with("reservation_released", released)
}

/// 409 `invalid-transition`: the state machine refuses the command.
pub fn invalid_transition(refused: TransitionRefused, status: OrderStatus) -> Problem {
    Problem::conflict("invalid-transition", refused.to_string())
        .with("order_status", status.as_str())
}

/// 409 `concurrent-update`: the order kept changing under us.
pub fn concurrent_update() -> Problem {
    Problem::conflict(
        "concurrent-update",
        "the order was changed concurrently; retry",
    )
}

/// `items[i].<leaf>` of the first of `skus` in the request, or `items`.
fn item_field(order: &NewOrder, skus: &[String], leaf: &str) -> String {
    skus.first()
        .and_then(|s| Sku::parse(s).ok())
        .and_then(|s| order.index_of(&s))
        .map(|i| format!("items[{i}].{leaf}"))
        .unwrap_or_else(|| "items".to_owned())
}

/// A priced order the domain refuses.
pub fn pricing(e: PricingError) -> Problem {
    match &e {
        PricingError::MixedCurrencies { skus } => {
            mixed_currencies(skus.iter().map(|s| s.as_str().to_owned()).collect())
        }
        PricingError::MissingPrice { index, sku } => unknown_sku(
            format!("items[{index}].sku"),
            vec![sku.as_str().to_owned()],
            format!("no product with sku {sku}"),
        ),
        PricingError::Overflow => Problem::unprocessable("items", e.to_string()),
        PricingError::InvalidDiscount => coupon_refused(CouponError::Unavailable(e.to_string())),
    }
}

/// The coupon was not held for the order (its reservation is handed back): 422 for a code that
/// names no coupon, 409 with the coupon context's reason as the type (`coupon-expired`,
/// `coupon-sold-out`, ...) for one that cannot be used, 503 when the coupon context did not
/// answer; each names `coupon_code`.
pub fn coupon_refused(e: CouponError) -> Problem {
    match e {
        CouponError::Unknown => Problem::new(
            422,
            "unknown-coupon",
            "Unknown coupon",
            "no coupon has this code",
        )
        .with_field("coupon_code"),
        CouponError::Refused {
            slug,
            detail,
            min_subtotal,
        } => {
            let p = Problem::conflict(&slug, detail).with_field("coupon_code");
            match min_subtotal {
                Some(min) => p.with("min_subtotal", min),
                None => p,
            }
        }
        CouponError::Unavailable(e) => {
            eprintln!("order: coupon try failed: {e}");
            Problem::unavailable(
                "the coupon component is unavailable; retry with the same Idempotency-Key",
            )
            .with_field("coupon_code")
        }
    }
}

/// Whether a problem body from the stock component is of type `slug`.
fn is_type(body: &serde_json::Value, slug: &str) -> bool {
    body["type"]
        .as_str()
        .is_some_and(|t| t.ends_with(&format!("/{slug}")))
}

/// A reservation the stock component did not make.
pub fn reserve_refused(order: &NewOrder, e: StockError) -> Problem {
    match e {
        // A hoarding cap (the customer holds too much unpaid): the stock component's problem as
        // it is, naming the cap.
        StockError::Conflict(body) if is_type(&body, "hoarding-cap") => {
            let detail = body["detail"].as_str().unwrap_or("a hoarding cap is reached");
            let mut p = Problem::conflict("hoarding-cap", detail);
            for member in ["cap", "limit", "held", "skus"] {
                if !body[member].is_null() {
                    p = p.with(member, &body[member]);
                }
            }
            p
        }
        StockError::Conflict(body) => {
            let skus = stock::short_skus(&body);
            insufficient_stock(item_field(order, &skus, "quantity"), skus)
        }
        StockError::NotFound(body) => {
            let skus = match body["sku"].as_str() {
                Some(s) => vec![s.to_owned()],
                None => stock::short_skus(&body),
            };
            let field = item_field(order, &skus, "sku");
            unknown_sku(field, skus, "a requested sku does not exist".to_owned())
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
        // The stock component's own limit (every order's reservations together): the client is
        // told to retry, as for ours.
        StockError::Limited(seconds) => Problem::new(
            429,
            "rate-limited",
            "Too many requests",
            "the stock reservations' rate limit is reached; retry with the same Idempotency-Key after Retry-After seconds",
        )
        .with_header("retry-after", seconds.to_string()),
        StockError::Unavailable(e) => {
            eprintln!("order: reservation failed: {e}");
            Problem::unavailable(
                "the stock component is unavailable; retry with the same Idempotency-Key",
            )
        }
    }
}

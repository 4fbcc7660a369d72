//! The order routes' rate limits and the circuit breaker on the stock call
//! ([`shop_adapter::ratelimit`], [`shop_adapter::breaker`]): one Redis round trip (the
//! instance's one connection) before a route's work, and one after a guarded stock call.
//!
//! Variables: `rate_limit_order_create` (route-wide), `rate_limit_order_create_per_customer`,
//! `rate_limit_order_read_per_customer` (get, list, cancel), `breaker_order_stock` (the stock
//! calls' breaker and their timeout), `breaker_order_coupon` (the coupon try's breaker and its
//! timeout), `rate_limit_redis_down_writes` / `_reads`.

// `Problem` is the one error a request ends with: boxing it would only add noise.
#![allow(clippy::result_large_err)]

use std::future::Future;
use std::rc::Rc;

use shop_adapter::breaker::{self, Breaker, Outcome};
use shop_adapter::identity::{Caller, Customer};
use shop_adapter::ratelimit::{Admitted, Guard, RouteKind};
use shop_adapter::Problem;
use spin_sdk::redis::Connection;

use crate::coupon::CouponError;
use crate::stock::StockError;

/// The breaker name of the order component's calls to the stock component.
pub const STOCK_BREAKER: &str = "order.stock";
/// The breaker name of the order component's coupon tries.
pub const COUPON_BREAKER: &str = "order.coupon";

/// The instance's Redis connection, `None` if it cannot be opened (the guard's fail mode
/// decides then).
fn redis() -> Option<Rc<Connection>> {
    let url = shop_adapter::vars::get("redis_url").ok()?;
    match shop_adapter::redis::connect(&url) {
        Ok(conn) => Some(conn),
        Err(e) => {
            eprintln!("order: redis for the rate limiter: {e}");
            None
        }
    }
}

/// The stock calls' breaker (and their timeout), from `breaker_order_stock`.
pub fn stock_breaker() -> Result<Breaker, Problem> {
    Breaker::from_var(STOCK_BREAKER, "breaker_order_stock")
}

/// The coupon tries' breaker (and their timeout), from `breaker_order_coupon`.
pub fn coupon_breaker() -> Result<Breaker, Problem> {
    Breaker::from_var(COUPON_BREAKER, "breaker_order_coupon")
}

/// An order with a coupon: the coupon breaker's admission (one more round trip, before anything
/// is reserved). Open: 503 with Retry-After, and the order is not attempted.
pub fn admit_coupon(coupon: &Breaker) -> Result<Admitted, Problem> {
    Guard::new(RouteKind::Write)
        .breaker(coupon)
        .admit(redis().as_deref())
}

/// `POST /api/orders`: the route-wide and the customer's limit, and the stock breaker's
/// admission, in one round trip.
pub fn admit_create(customer: &Customer, stock: &Breaker) -> Result<Admitted, Problem> {
    Guard::new(RouteKind::Write)
        .limit("rate_limit_order_create", "order.create")?
        .limit(
            "rate_limit_order_create_per_customer",
            &format!("order.create:customer:{}", customer.as_str()),
        )?
        .breaker(stock)
        .admit(redis().as_deref())
}

/// Reads and cancels: the customer's read limit (the admin is not limited).
pub fn admit_read(caller: &Caller) -> Result<Admitted, Problem> {
    match caller {
        Caller::Admin => Ok(Admitted::default()),
        Caller::Customer(c) => admit_customer_read(c, RouteKind::Read),
    }
}

/// A customer's read limit; `kind`: cancels are writes (their fail mode is the writes').
pub fn admit_customer_read(customer: &Customer, kind: RouteKind) -> Result<Admitted, Problem> {
    let key = format!("order.read:customer:{}", customer.as_str());
    Guard::new(kind)
        .limit("rate_limit_order_read_per_customer", &key)?
        .admit(redis().as_deref())
}

/// An error of a guarded call: whether it means the callee failed (for the breaker): 5xx,
/// unreachable or timed out. Refusals (404, 409, 422) are answers, not failures.
pub trait CallError {
    fn is_failure(&self) -> bool;
}

impl CallError for StockError {
    fn is_failure(&self) -> bool {
        matches!(self, StockError::Unavailable(_))
    }
}

impl CallError for CouponError {
    fn is_failure(&self) -> bool {
        matches!(self, CouponError::Unavailable(_))
    }
}

fn outcome<T, E: CallError>(result: &Result<T, E>) -> Outcome {
    match result {
        Err(e) if e.is_failure() => Outcome::Failure,
        _ => Outcome::Success,
    }
}

/// Runs one call under `breaker` (the call itself is bounded by the breaker's timeout in
/// [`crate::stock`] / [`crate::coupon`]; a timed-out call is unavailable), its outcome and
/// duration recorded afterwards. `probe`: this call is the half-open probe admitted with the
/// request.
pub async fn guarded<T, E: CallError>(
    breaker: &Breaker,
    probe: bool,
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let started = breaker::monotonic_ms();
    let result = call.await;
    let elapsed = breaker::monotonic_ms().saturating_sub(started);
    if let Some(conn) = redis() {
        breaker.record(&conn, outcome(&result), elapsed, probe);
    }
    result
}

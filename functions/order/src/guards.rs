//! The order routes' rate limits and the circuit breaker on the stock call
//! ([`shop_adapter::ratelimit`], [`shop_adapter::breaker`]): one Redis round trip (the
//! instance's one connection) before a route's work, and one after a guarded stock call.
//!
//! Variables: `rate_limit_order_create` (route-wide), `rate_limit_order_create_per_customer`,
//! `rate_limit_order_read_per_customer` (get, list, cancel), `breaker_order_stock` (the stock
//! calls' breaker and their timeout), `rate_limit_redis_down_writes` / `_reads`.

// `Problem` is the one error a request ends with: boxing it would only add noise.
#![allow(clippy::result_large_err)]

use std::future::Future;
use std::rc::Rc;

use shop_adapter::breaker::{self, Breaker, Outcome};
use shop_adapter::identity::{Caller, Customer};
use shop_adapter::ratelimit::{Admitted, Guard, RouteKind};
use shop_adapter::Problem;
use spin_sdk::redis::Connection;

use crate::stock::StockError;

/// The breaker name of the order component's calls to the stock component.
pub const STOCK_BREAKER: &str = "order.stock";

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

/// Whether a stock call's result means the stock component failed (for the breaker): 5xx,
/// unreachable or timed out. Refusals (404, 409, 422) are answers, not failures.
fn outcome<T>(result: &Result<T, StockError>) -> Outcome {
    match result {
        Err(StockError::Unavailable(_)) => Outcome::Failure,
        _ => Outcome::Success,
    }
}

/// Runs one stock call under `breaker` (the call itself is bounded by the breaker's timeout in
/// [`crate::stock`]; a timed-out call is `Unavailable`), its outcome and duration recorded
/// afterwards. `probe`: this call is the half-open probe admitted with the request.
pub async fn guarded<T>(
    breaker: &Breaker,
    probe: bool,
    call: impl Future<Output = Result<T, StockError>>,
) -> Result<T, StockError> {
    let started = breaker::monotonic_ms();
    let result = call.await;
    let elapsed = breaker::monotonic_ms().saturating_sub(started);
    if let Some(conn) = redis() {
        breaker.record(&conn, outcome(&result), elapsed, probe);
    }
    result
}

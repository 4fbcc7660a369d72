//! The stock routes' rate limits ([`shop_adapter::ratelimit`]): one Redis round trip on the
//! instance's one connection before the route's work.
//!
//! Variables: `rate_limit_product_read_per_client` (`GET /api/products/{sku}`, anonymous: per
//! client address), `rate_limit_stock_reserve` (route-wide: the reservations every order makes),
//! `rate_limit_flash_sale` / `rate_limit_flash_per_customer` ([`admit_flash_purchase`]),
//! `rate_limit_redis_down_writes` / `_reads`.

// `Problem` is the one error a request ends with: boxing it would only add noise.
#![allow(clippy::result_large_err)]

use std::rc::Rc;

use shop_adapter::identity::Customer;
use shop_adapter::ratelimit::{client_ip, Admitted, Guard, RouteKind};
use shop_adapter::Problem;
use spin_sdk::http::Request;
use spin_sdk::redis::Connection;

/// The instance's Redis connection (shared with [`crate::redis::Store`]); `None` if it cannot
/// be opened: the route's fail mode decides.
fn redis() -> Option<Rc<Connection>> {
    let url = shop_adapter::vars::get("redis_url").ok()?;
    shop_adapter::redis::connect(&url)
        .inspect_err(|e| eprintln!("stock: redis for the rate limiter: {e}"))
        .ok()
}

/// `GET /api/products/{sku}`: per client address (`spin-client-addr`).
pub fn admit_product_read(req: &Request) -> Result<Admitted, Problem> {
    let key = format!("stock.product-read:client:{}", client_ip(req));
    Guard::new(RouteKind::Read)
        .limit("rate_limit_product_read_per_client", &key)?
        .admit(redis().as_deref())
}

/// `POST /api/stock/reservations`: route-wide (every instance of every caller together).
pub fn admit_reserve() -> Result<Admitted, Problem> {
    Guard::new(RouteKind::Write)
        .limit("rate_limit_stock_reserve", "stock.reserve")?
        .admit(redis().as_deref())
}

/// A flash purchase of `customer` in sale `sale_id`: the sale's limit and the customer's, in one
/// round trip, always failing closed (503) when Redis cannot be asked (`cmd::purchase`).
pub fn admit_flash_purchase(sale_id: &str, customer: &Customer) -> Result<Admitted, Problem> {
    Guard::new(RouteKind::Purchase)
        .limit("rate_limit_flash_sale", &format!("flash.sale:{sale_id}"))?
        .limit(
            "rate_limit_flash_per_customer",
            &format!("flash.customer:{sale_id}:{}", customer.as_str()),
        )?
        .admit(redis().as_deref())
}

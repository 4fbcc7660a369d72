//! `GET /api/products/{sku}`: the catalog entry and its three stock buckets.
//!
//! One HMGET reads all fields at one instant, so `available + reserved + sold` in the answer is
//! always a consistent total, never a mix of before and after a reservation.

use shop_adapter::respond::{json, HandlerResult};
use shop_adapter::Problem;
use shop_domain::Sku;

use crate::redis::{keys, Store, PUT_PRODUCT};
use crate::view::ProductView;

pub fn handle(sku: &str) -> HandlerResult {
    // A string that is not a valid SKU names no product.
    let sku = Sku::parse(sku).map_err(|_| not_found(sku))?;
    let store = Store::open()?;
    let fields = store.hmget(
        &keys::product(sku.as_str()),
        &["name", "price", "currency", "available", "reserved", "sold"],
    )?;
    let Some(fields) = fields.into_iter().collect::<Option<Vec<String>>>() else {
        return Err(not_found(sku.as_str()));
    };
    Ok(json(
        200,
        &ProductView::from_fields(sku.as_str(), &fields, &PUT_PRODUCT)?,
    ))
}

fn not_found(sku: &str) -> Problem {
    Problem::not_found(format!("no product with sku {sku:?}")).with("skus", [sku])
}

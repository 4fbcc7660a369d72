//! `PUT /api/flash-sales/{sale_id}` (admin): create a flash sale, or change one that has not
//! started. `{sku, price, currency, quantity, per_user_limit, starts_at, ends_at}`.
//!
//! The sale holds its units like a reservation: creating it moves `quantity` units of the
//! product from `available` to `reserved` (refused, 409 `insufficient-stock`, when fewer are
//! available), so the product's `available + reserved + sold` never changes. Until it starts,
//! every field but the SKU may change (a new quantity moves only the difference); from its
//! start on, a PUT is 409 `sale-started`: buyers were admitted under its terms. The SKU must
//! exist (404 naming `sku`) and the price must be in its catalog currency (422 naming
//! `currency`). All of that is decided in put_sale.lua, in the step that moves the units.

use shop_adapter::body::{parse_object, Fields};
use shop_adapter::respond::{json, HandlerResult};
use shop_adapter::Problem;
use shop_domain::flash::{FlashSale, RawFlashSale, SaleId};
use spin_sdk::http::Request;

use crate::redis::{bad_reply, keys, Store, PUT_SALE};

/// The most a sale body may be: a few times the largest valid one (under 1 KiB).
pub const BODY_LIMIT: usize = 4 * 1024;

pub fn handle(req: &Request, sale_id: &str) -> HandlerResult {
    let id = SaleId::parse(sale_id).map_err(|e| Problem::unprocessable("sale_id", e))?;
    let sale = parse(req.body())?;
    let store = Store::open()?;
    let reply = store.run(
        &PUT_SALE,
        &[
            &keys::sale(id.as_str()),
            &keys::product(sale.sku.as_str()),
            keys::SALES,
            keys::SALE_ENDS,
        ],
        &[
            id.as_str(),
            sale.sku.as_str(),
            &sale.price.minor().to_string(),
            sale.price.currency().as_str(),
            &sale.quantity.to_string(),
            &sale.per_user_limit.to_string(),
            &sale.starts_at.millis().to_string(),
            &sale.ends_at.millis().to_string(),
        ],
    )?;
    let sku = sale.sku.as_str();
    match reply
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["OK", created] => {
            let view = crate::cmd::get_sale::read(&store, &id)?
                .ok_or_else(|| bad_reply(&PUT_SALE, &reply))?;
            Ok(json(if *created == "1" { 201 } else { 200 }, &view))
        }
        ["UNKNOWN_SKU"] => Err(Problem::not_found(format!("unknown sku: {sku}")).with_field("sku")),
        ["CURRENCY", catalog] => Err(Problem::unprocessable(
            "currency",
            format!(
                "{sku} is priced in {catalog} in the catalog: a flash price must be in {catalog}"
            ),
        )),
        ["SHORT", available] => Err(Problem::conflict(
            "insufficient-stock",
            format!(
                "{sku} has {available} units available, the sale needs {}",
                sale.quantity
            ),
        )
        .with_field("quantity")
        .with("available", available.parse::<u64>().unwrap_or(0))),
        ["STARTED", _] => Err(Problem::conflict(
            "sale-started",
            format!("flash sale {id:?} has started: it can no longer change"),
        )),
        ["SKU_CHANGE", was] => Err(Problem::unprocessable(
            "sku",
            format!("flash sale {id:?} sells {was}: its SKU cannot change (create another sale)"),
        )),
        ["ENDS_PAST", _] => Err(Problem::unprocessable("ends_at", "must be in the future")),
        _ => Err(bad_reply(&PUT_SALE, &reply)),
    }
}

/// JSON -> domain sale; every failure names the field.
fn parse(body: &[u8]) -> Result<FlashSale, Problem> {
    let body = parse_object(body)?;
    let f = Fields::root(&body);
    FlashSale::parse(RawFlashSale {
        sku: f.str("sku")?,
        price: f.i64("price")?,
        currency: f.str("currency")?,
        quantity: f.i64("quantity")?,
        per_user_limit: f.i64("per_user_limit")?,
        starts_at: f.str("starts_at")?,
        ends_at: f.str("ends_at")?,
    })
    .map_err(|e| Problem::unprocessable(&e.field, e.detail))
}

//! `GET /api/flash-sales/{sale_id}`: the sale's terms and counters (public, like a product).
//!
//! `remaining`: units a buyer can still get; `sold`: units of paid orders; `taken`: units held
//! by tickets (quantity - remaining: pending, ordered and sold); `pending`: tickets whose order
//! is not created yet.

use shop_adapter::respond::{json, HandlerResult};
use shop_adapter::Problem;
use shop_domain::flash::SaleId;

use crate::redis::{keys, Store};
use crate::view::SaleView;

pub fn handle(sale_id: &str) -> HandlerResult {
    let id = SaleId::parse(sale_id).map_err(|_| not_found(sale_id))?;
    let view = read(&Store::open()?, &id)?.ok_or_else(|| not_found(sale_id))?;
    Ok(json(200, &view))
}

/// The sale `id`, `None` when there is none.
pub fn read(store: &Store, id: &SaleId) -> Result<Option<SaleView>, Problem> {
    let fields = store.hmget(&keys::sale(id.as_str()), SaleView::FIELDS)?;
    let pending = store.zcard(&keys::sale_pending(id.as_str()))?;
    SaleView::from_fields(id.as_str(), &fields, pending)
}

pub fn not_found(sale_id: &str) -> Problem {
    Problem::not_found(format!("no flash sale with id {sale_id:?}"))
}

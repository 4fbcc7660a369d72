//! `GET /api/flash-sales/{sale_id}`: the sale's terms and counters (public, like a product).
//!
//! `remaining`: units a buyer can still get; `sold`: units of paid orders; `taken`: units held
//! by tickets (quantity - remaining: pending, ordered and sold); `pending`: tickets whose order
//! is not created yet.
//!
//! With a customer's token (the sale's page of a signed-in buyer, before and during the sale)
//! the answer adds `you: {customer, bought, may_buy}`; a token that does not verify is a 401.

use shop_adapter::identity::{self, Caller};
use shop_adapter::respond::{json, HandlerResult};
use shop_adapter::Problem;
use shop_domain::flash::SaleId;
use spin_sdk::http::Request;

use crate::redis::{keys, Store};
use crate::view::{BuyerView, SaleView};

pub fn handle(req: &Request, sale_id: &str) -> HandlerResult {
    let visitor = identity::visitor(req)?;
    let id = SaleId::parse(sale_id).map_err(|_| not_found(sale_id))?;
    let store = Store::open()?;
    let mut view = read(&store, &id)?.ok_or_else(|| not_found(sale_id))?;
    if let Some(Caller::Customer(customer)) = visitor {
        let bought = store.hmget(&keys::sale_buyers(id.as_str()), &[customer.as_str()])?;
        let bought = bought
            .first()
            .cloned()
            .flatten()
            .map_or(Ok(0), |n| n.parse::<u64>())
            .map_err(|e| Problem::internal("unreadable flash sale buyer count", e))?;
        view.you = Some(BuyerView::new(&view, customer.as_str(), bought));
    }
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

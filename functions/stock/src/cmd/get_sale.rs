//! `GET /api/flash-sales/{sale_id}`: the sale's terms and counters (public, like a product).
//!
//! `remaining`: units a buyer can still get; `sold`: units of paid orders; `taken`: units held
//! by tickets (quantity - remaining: pending, ordered and sold); `pending`: tickets whose order
//! is not created yet.
//!
//! With a customer's token (the sale's page of a signed-in buyer, before and during the sale)
//! the answer adds `you: {customer, bought, may_buy}`; a token that does not verify is a 401.

use shop_adapter::identity::{self, Caller, Customer};
use shop_adapter::respond::{json, HandlerResult};
use shop_adapter::Problem;
use shop_domain::flash::SaleId;
use spin_sdk::http::Request;

use crate::redis::{bad_reply, keys, Store, SALE_VIEW};
use crate::view::{BuyerView, SaleView};

pub fn handle(req: &Request, sale_id: &str) -> HandlerResult {
    let visitor = identity::visitor(req)?;
    let id = SaleId::parse(sale_id).map_err(|_| not_found(sale_id))?;
    let buyer = match &visitor {
        Some(Caller::Customer(customer)) => Some(customer),
        _ => None,
    };
    let view = read_as(&Store::open()?, &id, buyer)?.ok_or_else(|| not_found(sale_id))?;
    Ok(json(200, &view))
}

/// The sale `id`, `None` when there is none.
pub fn read(store: &Store, id: &SaleId) -> Result<Option<SaleView>, Problem> {
    read_as(store, id, None)
}

/// The sale `id` as `buyer` sees it (with `you`), in one round trip (sale_view.lua).
fn read_as(
    store: &Store,
    id: &SaleId,
    buyer: Option<&Customer>,
) -> Result<Option<SaleView>, Problem> {
    let sid = id.as_str();
    let mut args = vec![buyer.map_or("", Customer::as_str)];
    args.extend_from_slice(SaleView::FIELDS);
    let keys = [
        keys::sale(sid),
        keys::sale_pending(sid),
        keys::sale_buyers(sid),
    ];
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let reply = store.run(&SALE_VIEW, &keys, &args)?;
    let bad = || bad_reply(&SALE_VIEW, &reply);
    let (pending, bought, values) = match reply.as_slice() {
        [none] if none == "NONE" => return Ok(None),
        [sale, pending, bought, values @ ..] if sale == "SALE" => (pending, bought, values),
        _ => return Err(bad()),
    };
    let count = |n: &String| n.parse::<u64>().map_err(|_| bad());
    let fields: Vec<Option<String>> = values
        .iter()
        .map(|v| (!v.is_empty()).then(|| v.clone()))
        .collect();
    let Some(mut view) = SaleView::from_fields(sid, &fields, count(pending)?)? else {
        return Ok(None);
    };
    if let Some(customer) = buyer {
        view.you = Some(BuyerView::new(&view, customer.as_str(), count(bought)?));
    }
    Ok(Some(view))
}

pub fn not_found(sale_id: &str) -> Problem {
    Problem::not_found(format!("no flash sale with id {sale_id:?}"))
}

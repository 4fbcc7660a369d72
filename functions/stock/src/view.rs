//! The JSON shapes the stock API answers with, built from what the scripts return.

use serde::{Deserialize, Serialize};
use shop_adapter::Problem;
use shop_domain::flash::TicketStatus;
use shop_domain::timestamp::Timestamp;

use crate::redis::{bad_reply, Script};

/// `GET /api/products/{sku}` and the answer of `PUT`.
#[derive(Debug, Serialize)]
pub struct ProductView {
    pub sku: String,
    pub name: String,
    /// Catalog price per unit, in minor units of `currency`.
    pub price: i64,
    pub currency: String,
    pub available: u64,
    pub reserved: u64,
    pub sold: u64,
}

impl ProductView {
    /// From `[name, price, currency, available, reserved, sold]` as stored.
    pub fn from_fields(sku: &str, f: &[String], script: &Script) -> Result<Self, Problem> {
        let bad = || bad_reply(script, f);
        let [name, price, currency, available, reserved, sold] = f else {
            return Err(bad());
        };
        Ok(ProductView {
            sku: sku.to_owned(),
            name: name.clone(),
            price: price.parse().map_err(|_| bad())?,
            currency: currency.clone(),
            available: available.parse().map_err(|_| bad())?,
            reserved: reserved.parse().map_err(|_| bad())?,
            sold: sold.parse().map_err(|_| bad())?,
        })
    }
}

/// One reserved line, with the catalog price snapshot taken when it was reserved: the order
/// component prices orders from these, never from its client.
#[derive(Debug, Serialize)]
pub struct ItemView {
    pub sku: String,
    pub quantity: u64,
    /// Minor units of `currency` per unit.
    pub unit_price: i64,
    pub currency: String,
}

/// A line as reserve.lua stores it (cjson: the price stays the string it was in the hash).
#[derive(Deserialize)]
struct StoredItem {
    sku: String,
    quantity: u64,
    unit_price: String,
    currency: String,
}

/// The answer of every reservation route.
#[derive(Debug, Serialize)]
pub struct ReservationView {
    pub reservation_id: String,
    pub status: String,
    pub items: Vec<ItemView>,
    pub expires_at: Timestamp,
}

impl ReservationView {
    /// From `[status, expires_at_ms, items_json]` as the scripts return them.
    pub fn from_reply(id: &str, f: &[String], script: &Script) -> Result<Self, Problem> {
        let bad = || bad_reply(script, f);
        let [status, expires_at, items] = f else {
            return Err(bad());
        };
        let expires_at = expires_at
            .parse::<i64>()
            .ok()
            .and_then(|ms| Timestamp::from_millis(ms).ok())
            .ok_or_else(bad)?;
        let stored: Vec<StoredItem> = serde_json::from_str(items).map_err(|_| bad())?;
        let items = stored
            .into_iter()
            .map(|i| {
                Ok(ItemView {
                    unit_price: i.unit_price.parse().map_err(|_| bad())?,
                    sku: i.sku,
                    quantity: i.quantity,
                    currency: i.currency,
                })
            })
            .collect::<Result<_, Problem>>()?;
        Ok(ReservationView {
            reservation_id: id.to_owned(),
            status: status.clone(),
            items,
            expires_at,
        })
    }
}

/// `GET /api/flash-sales/{id}` and the answer of `PUT`.
#[derive(Debug, Serialize)]
pub struct SaleView {
    pub sale_id: String,
    pub sku: String,
    /// The flash price per unit, in minor units of `currency`.
    pub price: i64,
    pub currency: String,
    pub quantity: u64,
    pub per_user_limit: u64,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub remaining: i64,
    pub sold: i64,
    /// Units held by tickets: `quantity - remaining` (pending, ordered and sold).
    pub taken: i64,
    /// Tickets whose order is not created yet.
    pub pending: u64,
    /// The signed-in customer's own standing (only when a customer's token came).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub you: Option<BuyerView>,
}

/// What one customer has taken from a sale and may still take.
#[derive(Debug, Serialize)]
pub struct BuyerView {
    pub customer: String,
    /// Units the customer's tickets hold (pending, ordered or sold).
    pub bought: u64,
    /// Units they may still buy: the per-user limit less `bought`, at most `remaining`.
    pub may_buy: u64,
}

impl BuyerView {
    pub fn new(sale: &SaleView, customer: &str, bought: u64) -> BuyerView {
        let remaining = u64::try_from(sale.remaining).unwrap_or(0);
        BuyerView {
            customer: customer.to_owned(),
            bought,
            may_buy: sale.per_user_limit.saturating_sub(bought).min(remaining),
        }
    }
}

impl SaleView {
    /// The sale hash's fields [`SaleView::from_fields`] reads, in order.
    pub const FIELDS: &'static [&'static str] = &[
        "sku",
        "price",
        "currency",
        "quantity",
        "per_user_limit",
        "starts_at",
        "ends_at",
        "remaining",
        "sold",
    ];

    /// From the sale hash's [`SaleView::FIELDS`]; `None` when the sale does not exist.
    pub fn from_fields(
        id: &str,
        f: &[Option<String>],
        pending: u64,
    ) -> Result<Option<Self>, Problem> {
        let bad = || Problem::internal("unreadable flash sale", format!("{id}: {f:?}"));
        let [Some(sku), Some(price), Some(currency), Some(quantity), Some(limit), Some(starts), Some(ends), Some(remaining), Some(sold)] =
            f
        else {
            return match f.first() {
                Some(None) => Ok(None),
                _ => Err(bad()),
            };
        };
        let n = |s: &str| s.parse::<i64>().map_err(|_| bad());
        let at = |s: &str| Timestamp::from_millis(n(s)?).map_err(|_| bad());
        let quantity = n(quantity)?;
        let remaining = n(remaining)?;
        Ok(Some(SaleView {
            sale_id: id.to_owned(),
            sku: sku.clone(),
            price: n(price)?,
            currency: currency.clone(),
            quantity: quantity as u64,
            per_user_limit: n(limit)? as u64,
            starts_at: at(starts)?,
            ends_at: at(ends)?,
            remaining,
            sold: n(sold)?,
            taken: quantity - remaining,
            pending,
            you: None,
        }))
    }
}

/// A purchase ticket, as its buyer sees it.
#[derive(Debug, Serialize)]
pub struct TicketView {
    pub ticket_id: String,
    pub sale_id: String,
    pub status: TicketStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl TicketView {
    /// From a ticket's status, order id and reason as stored (`""` for none).
    pub fn new(
        ticket_id: &str,
        sale_id: &str,
        status: TicketStatus,
        order: &str,
        reason: &str,
    ) -> Self {
        let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        TicketView {
            ticket_id: ticket_id.to_owned(),
            sale_id: sale_id.to_owned(),
            status,
            order_id: some(order),
            reason: some(reason),
        }
    }
}

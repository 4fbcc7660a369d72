//! The JSON shapes the stock API answers with, built from what the scripts return.

use serde::{Deserialize, Serialize};
use shop_adapter::Problem;
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

//! Flash sales: a fixed number of units of one product sold at a flash price inside a time
//! window, each buyer limited to a few units, bought through tickets whose orders are created
//! asynchronously by the order context.
//!
//! The stock context decides a purchase in one atomic step (its `purchase.lua`) and appends a
//! [`FlashOrderRequested`] to the `flash` stream in that same step; the order context creates
//! the order and answers with [`FlashOrderPlaced`] or [`FlashOrderRefused`] on its own topic.
//! These are the messages' payloads (the envelope is `shop_adapter::receiver::Envelope`).

use serde::{Deserialize, Serialize};

use crate::field::FieldError;
use crate::money::{Currency, Money};
use crate::sku::Sku;
use crate::timestamp::Timestamp;

/// The stream (`events:flash`) and doorbell (`doorbell:flash`) of purchase requests.
pub const TOPIC: &str = "flash";

/// Most units one sale may hold (a bound on what one admin request moves).
pub const MAX_QUANTITY: i64 = 1_000_000;
/// Most units one buyer may get from one sale.
pub const MAX_PER_USER: i64 = 1_000;

/// A sale id: 1-64 characters of `A-Z a-z 0-9 - _ . :`, not dots only (safe in a URL path
/// segment and a Redis key).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SaleId(String);

impl SaleId {
    pub const MAX_LEN: usize = 64;

    pub fn parse(s: &str) -> Result<Self, String> {
        crate::key_safe::check(s, Self::MAX_LEN, true)?;
        Ok(SaleId(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `PUT /api/flash-sales/{id}` as the client sent it.
#[derive(Debug, Clone)]
pub struct RawFlashSale<'a> {
    pub sku: &'a str,
    pub price: i64,
    pub currency: &'a str,
    pub quantity: i64,
    pub per_user_limit: i64,
    pub starts_at: &'a str,
    pub ends_at: &'a str,
}

/// A valid flash sale definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlashSale {
    pub sku: Sku,
    pub price: Money,
    pub quantity: u32,
    pub per_user_limit: u32,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
}

impl FlashSale {
    /// Every rule of a definition on its own; each failure names its field. Whether the SKU
    /// exists, its currency matches and enough units are available is the store's to decide,
    /// in the step that moves them.
    pub fn parse(raw: RawFlashSale<'_>) -> Result<Self, FieldError> {
        let sku = Sku::parse(raw.sku).map_err(|e| FieldError::new("sku", e.to_string()))?;
        let currency = Currency::parse(raw.currency)
            .map_err(|e| FieldError::new("currency", e.to_string()))?;
        let price =
            Money::new(raw.price, currency).map_err(|e| FieldError::new("price", e.to_string()))?;
        let quantity = bounded("quantity", raw.quantity, MAX_QUANTITY)?;
        let per_user_limit = bounded("per_user_limit", raw.per_user_limit, MAX_PER_USER)?;
        let time = |field: &str, s: &str| {
            Timestamp::parse_rfc3339(s).map_err(|e| FieldError::new(field, e.to_string()))
        };
        let starts_at = time("starts_at", raw.starts_at)?;
        let ends_at = time("ends_at", raw.ends_at)?;
        if ends_at <= starts_at {
            return Err(FieldError::new("ends_at", "must be later than starts_at"));
        }
        Ok(FlashSale {
            sku,
            price,
            quantity,
            per_user_limit,
            starts_at,
            ends_at,
        })
    }
}

fn bounded(field: &str, n: i64, max: i64) -> Result<u32, FieldError> {
    if !(1..=max).contains(&n) {
        return Err(FieldError::new(field, format!("must be 1 to {max}")));
    }
    Ok(n as u32)
}

/// Where a purchase ticket stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TicketStatus {
    /// The unit is taken and the order request is on its way.
    Pending,
    /// The order exists (`order_id`).
    Ordered,
    /// The order context refused the request; the unit went back to the sale.
    Failed,
}

impl TicketStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TicketStatus::Pending => "PENDING",
            TicketStatus::Ordered => "ORDERED",
            TicketStatus::Failed => "FAILED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Ordered, Self::Failed]
            .into_iter()
            .find(|t| t.as_str() == s)
    }
}

/// Stock -> order (topic [`TOPIC`]): create the order of a ticket. Written by the stock
/// context's `purchase.lua` (cjson, the price spliced in as an exact integer), in the same
/// atomic step that takes the unit, so a unit is never taken without its request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlashOrderRequested {
    pub ticket_id: String,
    pub sale_id: String,
    /// The buyer: the `sub` of the token that bought.
    pub customer: String,
    pub sku: String,
    pub quantity: u32,
    /// Minor units of `currency`: the flash price, per unit.
    pub unit_price: i64,
    pub currency: String,
    /// The stock reservation holding the unit (it carries the sale, so a release gives the
    /// unit back to the sale).
    pub reservation_id: String,
    /// The reservation's expiry: the order's payment deadline.
    pub expires_at_ms: i64,
}

impl FlashOrderRequested {
    pub const KIND: &'static str = "FlashOrderRequested";
}

/// Order -> stock (topic `orders`): the ticket's order exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlashOrderPlaced {
    pub ticket_id: String,
    pub sale_id: String,
    pub order_id: String,
    pub reservation_id: String,
}

impl FlashOrderPlaced {
    pub const KIND: &'static str = "FlashOrderPlaced";
}

/// Why the order context refused a ticket's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RefusalReason {
    /// A field of the request is not valid (not a user id, a SKU, a price...).
    InvalidRequest,
    /// The reservation expired before the request reached the order context.
    ReservationExpired,
}

impl RefusalReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::InvalidRequest => "invalid-request",
            RefusalReason::ReservationExpired => "reservation-expired",
        }
    }
}

/// Order -> stock (topic `orders`): no order for this ticket; its unit goes back to the sale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlashOrderRefused {
    pub ticket_id: String,
    pub sale_id: String,
    pub reservation_id: String,
    pub reason: RefusalReason,
}

impl FlashOrderRefused {
    pub const KIND: &'static str = "FlashOrderRefused";
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw() -> RawFlashSale<'static> {
        RawFlashSale {
            sku: "SKU-1",
            price: 999,
            currency: "EUR",
            quantity: 100,
            per_user_limit: 1,
            starts_at: "2026-01-01T00:00:00Z",
            ends_at: "2026-01-01T01:00:00Z",
        }
    }

    #[test]
    fn a_valid_sale_parses() {
        let sale = FlashSale::parse(raw()).unwrap();
        assert_eq!((sale.quantity, sale.per_user_limit), (100, 1));
        assert_eq!(sale.price.minor(), 999);
    }

    #[test]
    fn every_field_is_named_when_wrong() {
        let cases: Vec<(RawFlashSale, &str)> = vec![
            (RawFlashSale { sku: "", ..raw() }, "sku"),
            (
                RawFlashSale {
                    currency: "eu",
                    ..raw()
                },
                "currency",
            ),
            (RawFlashSale { price: -1, ..raw() }, "price"),
            (
                RawFlashSale {
                    quantity: 0,
                    ..raw()
                },
                "quantity",
            ),
            (
                RawFlashSale {
                    per_user_limit: 0,
                    ..raw()
                },
                "per_user_limit",
            ),
            (
                RawFlashSale {
                    starts_at: "soon",
                    ..raw()
                },
                "starts_at",
            ),
            (
                RawFlashSale {
                    ends_at: "2025-01-01T00:00:00Z",
                    ..raw()
                },
                "ends_at",
            ),
        ];
        for (raw, field) in cases {
            assert_eq!(FlashSale::parse(raw).unwrap_err().field, field);
        }
    }

    #[test]
    fn sale_ids_are_key_safe() {
        assert!(SaleId::parse("spring-2026.1").is_ok());
        assert!(SaleId::parse("a/b").is_err());
        assert!(SaleId::parse("..").is_err());
        assert!(SaleId::parse(&"x".repeat(65)).is_err());
    }

    #[test]
    fn messages_round_trip() {
        let req = FlashOrderRequested {
            ticket_id: "tkt_1".into(),
            sale_id: "s1".into(),
            customer: "u1".into(),
            sku: "SKU-1".into(),
            quantity: 1,
            unit_price: 9_007_199_254_740_991,
            currency: "EUR".into(),
            reservation_id: "flash_1".into(),
            expires_at_ms: 1_800_000_000_000,
        };
        let back: FlashOrderRequested =
            serde_json::from_str(&serde_json::to_string(&req).unwrap()).unwrap();
        assert_eq!(back, req);
        let refused = FlashOrderRefused {
            ticket_id: "tkt_1".into(),
            sale_id: "s1".into(),
            reservation_id: "flash_1".into(),
            reason: RefusalReason::ReservationExpired,
        };
        let json = serde_json::to_value(&refused).unwrap();
        assert_eq!(json["reason"], RefusalReason::ReservationExpired.as_str());
        assert_eq!(
            serde_json::from_value::<FlashOrderRefused>(json).unwrap(),
            refused
        );
    }

    #[test]
    fn ticket_statuses_spell_as_stored() {
        for t in [
            TicketStatus::Pending,
            TicketStatus::Ordered,
            TicketStatus::Failed,
        ] {
            assert_eq!(TicketStatus::parse(t.as_str()), Some(t));
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
    }
}

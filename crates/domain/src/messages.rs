//! The contract between contexts: every message that crosses one, as a serde type per topic.
//!
//! A message travels in an [`Envelope`] (a Redis stream entry's field `m`): its `type` names
//! the message and its `payload` carries the fields. Each topic's enum ([`OrderEvent`],
//! [`PaymentEvent`], [`StockEvent`], [`FlashRequest`]) is tagged by that `type` and holds the
//! `payload` as its variant's struct, so a sender serializes a value of the enum ([`encode`])
//! and a receiver decodes one ([`Envelope::decode`]); nobody spells a kind or builds a payload
//! by hand. A message a receiver cannot read (a kind its topic does not have, a payload that
//! does not fit its type) is [`Unreadable`]: receivers dead-letter it with that reason at once
//! (retrying cannot change it), never apply a default in its place.
//!
//! Fields added later must be optional (`#[serde(default)]`), so a receiver of the new
//! contract reads what an old sender left in a stream; unknown fields are ignored, so an old
//! receiver reads a new sender's. The checked-in examples (`tests/messages.json`) make every
//! change of the wire format visible in review.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::flash::{FlashOrderPlaced, FlashOrderRefused, FlashOrderRequested};
use crate::money::{Currency, Money};
use crate::new_order::{CouponCode, UserId};
use crate::order::OrderStatus;
use crate::payment::ProviderId;
use crate::reservation::ReservationId;

/// A message as it travels on a stream (the entry's field `m`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub message_id: String,
    pub topic: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub aggregate_id: String,
    pub seq: i64,
    pub payload: serde_json::Value,
    pub trace_id: Option<String>,
    pub created_at: String,
}

impl Envelope {
    /// The message as its topic's type `T`; [`Unreadable`] (with the reason) when its kind is
    /// not one of `T`'s, or its payload does not fit the kind's struct.
    pub fn decode<T: Topic>(&self) -> Result<T, Unreadable> {
        let tagged = serde_json::json!({ "type": self.kind, "payload": self.payload });
        serde_json::from_value(tagged).map_err(|e| Unreadable {
            message_id: self.message_id.clone(),
            kind: self.kind.clone(),
            reason: e.to_string(),
        })
    }
}

/// A topic's messages: one enum, tagged by the envelope's `type`, its variants' structs the
/// `payload`.
pub trait Topic: Serialize + DeserializeOwned {
    /// The topic's stream (`events:<TOPIC>`) and doorbell (`doorbell:<TOPIC>`).
    const TOPIC: &'static str;
}

/// A message split as the envelope carries it: its kind (`type`) and payload.
pub fn encode<T: Topic>(message: &T) -> serde_json::Result<(String, serde_json::Value)> {
    let mut tagged = serde_json::to_value(message)?;
    let kind = match tagged.get("type") {
        Some(serde_json::Value::String(k)) => k.clone(),
        _ => {
            return Err(serde::de::Error::custom(
                "a message serializes with its type",
            ))
        }
    };
    let payload = tagged
        .get_mut("payload")
        .map(serde_json::Value::take)
        .unwrap_or_default();
    Ok((kind, payload))
}

/// A message its receiver cannot read: dead-lettered at once with [`Unreadable::reason`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub message_id: String,
    pub kind: String,
    pub reason: String,
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "unreadable message {} of type {:?}: {}",
            self.message_id, self.kind, self.reason
        )
    }
}

impl std::error::Error for Unreadable {}

// ------------------------------------------------------------------------------------------
// Topic `orders`: the order context's announcements.

/// Order -> stock, payments, coupons (topic `orders`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "payload")]
pub enum OrderEvent {
    OrderCreated(OrderCreated),
    OrderPaid(OrderPaid),
    OrderCancelled(OrderCancelled),
    OrderExpired(OrderExpired),
    /// The money of a payment must go back to the customer.
    RefundRequired(RefundRequired),
    /// A reservation no order holds any more must be released.
    ReservationReleaseOwed(ReservationReleaseOwed),
    FlashOrderPlaced(FlashOrderPlaced),
    FlashOrderRefused(FlashOrderRefused),
    /// The provider refunded the order's payment: the order is REFUNDED.
    OrderRefunded(OrderRefunded),
}

impl Topic for OrderEvent {
    const TOPIC: &'static str = "orders";
}

/// One line of a new order, amounts in minor units of the order's currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    pub sku: String,
    pub quantity: i64,
    pub unit_price: i64,
    pub line_total: i64,
}

/// A new order awaiting payment, as its view shows it, plus the reservation holding its units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderCreated {
    pub order_id: String,
    pub user_id: UserId,
    pub status: OrderStatus,
    pub items: Vec<OrderLine>,
    pub subtotal: i64,
    pub discount: i64,
    pub total: i64,
    pub currency: Currency,
    pub coupon_code: Option<CouponCode>,
    pub created_at: String,
    pub expires_at: String,
    pub version: i64,
    pub reservation_id: ReservationId,
}

/// What every status change of an order says: whose order, from which status to which, at
/// which version, and the reservation holding its units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderChange {
    pub order_id: String,
    pub user_id: UserId,
    pub status: OrderStatus,
    pub previous_status: OrderStatus,
    pub version: i64,
    pub reservation_id: ReservationId,
    /// The order's coupon, if any: its redemption (id = the order id) is confirmed when the
    /// order is paid and cancelled when it is cancelled or expires (the coupon context).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coupon_code: Option<CouponCode>,
}

/// PENDING_PAYMENT -> PAID: the stock context sells the reservation's units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderPaid {
    #[serde(flatten)]
    pub order: OrderChange,
    /// The amount paid (fields `total`, `currency`).
    #[serde(with = "total")]
    #[serde(flatten)]
    pub total: Money,
    pub payment_intent_id: ProviderId,
    pub paid_at: String,
}

/// Why an order was cancelled, when not by its customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CancelReason {
    /// A paid order whose units the stock context could not sell.
    OutOfStock,
}

/// -> CANCELLED: the stock context releases the reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCancelled {
    #[serde(flatten)]
    pub order: OrderChange,
    pub cancelled_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<CancelReason>,
}

/// PENDING_PAYMENT -> EXPIRED: the stock context releases the reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderExpired {
    #[serde(flatten)]
    pub order: OrderChange,
    pub expired_at: String,
}

/// PENDING_PAYMENT, PAID, CANCELLED or EXPIRED -> REFUNDED: the provider gave the payment back.
/// From PENDING_PAYMENT (a mismatched payment given back) the order ends unpaid: the stock
/// context releases its reservation and the coupon context cancels its redemption
/// ([`OrderRefunded::ends_unpaid`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRefunded {
    #[serde(flatten)]
    pub order: OrderChange,
    pub refunded_at: String,
}

impl OrderRefunded {
    /// Whether the order was never paid: its units and its coupon's capacity go back, like an
    /// expiry's. (From PAID they were sold; from CANCELLED or EXPIRED they went back already.)
    pub fn ends_unpaid(&self) -> bool {
        self.order.previous_status == OrderStatus::PendingPayment
    }
}

/// Why a payment must be refunded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RefundReason {
    /// The payment names no order the shop knows.
    UnknownOrder,
    AmountMismatch,
    CurrencyMismatch,
    /// Another payment paid the order already.
    AlreadyPaid,
    /// The order was cancelled before the payment reached it.
    OrderCancelled,
    /// The order expired before the payment reached it.
    OrderExpired,
    OrderShipped,
    OrderCompleted,
    OrderRefunded,
    /// The order was paid, but its units were released and are gone.
    OutOfStock,
}

impl RefundReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RefundReason::UnknownOrder => "unknown-order",
            RefundReason::AmountMismatch => "amount-mismatch",
            RefundReason::CurrencyMismatch => "currency-mismatch",
            RefundReason::AlreadyPaid => "already-paid",
            RefundReason::OrderCancelled => "order-cancelled",
            RefundReason::OrderExpired => "order-expired",
            RefundReason::OrderShipped => "order-shipped",
            RefundReason::OrderCompleted => "order-completed",
            RefundReason::OrderRefunded => "order-refunded",
            RefundReason::OutOfStock => "out-of-stock",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
    }
}

/// A payment the shop keeps no order for (or cannot fulfil) must go back, in full.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefundRequired {
    pub order_id: String,
    pub payment_intent_id: ProviderId,
    /// The amount to refund (fields `amount`, `currency`).
    #[serde(flatten)]
    pub amount: Money,
    /// The provider event that reported the payment (none when the refund follows a later
    /// decision, e.g. out of stock).
    pub event_id: Option<String>,
    pub reason: RefundReason,
}

/// Why a reservation is released without an order's cancel or expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReleaseReason {
    OrderWriteFailed,
    ClaimAbandoned,
    OrderCancelled,
    OrderExpired,
}

impl ReleaseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseReason::OrderWriteFailed => "order-write-failed",
            ReleaseReason::ClaimAbandoned => "claim-abandoned",
            ReleaseReason::OrderCancelled => "order-cancelled",
            ReleaseReason::OrderExpired => "order-expired",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservationReleaseOwed {
    pub reservation_id: ReservationId,
    pub order_id: Option<String>,
    pub reason: ReleaseReason,
}

// ------------------------------------------------------------------------------------------
// Topic `payments`: the payments context's record of the provider's events.

/// Payments -> order (topic `payments`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "payload")]
pub enum PaymentEvent {
    PaymentSucceeded(PaymentSucceeded),
    PaymentFailed(PaymentFailed),
    PaymentRefunded(PaymentRefunded),
}

impl Topic for PaymentEvent {
    const TOPIC: &'static str = "payments";
}

/// A payment intent succeeded (fields `amount`, `currency`: what the provider took).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentSucceeded {
    pub order_id: String,
    pub payment_intent_id: ProviderId,
    #[serde(flatten)]
    pub amount: Money,
    pub event_id: ProviderId,
}

/// A payment attempt failed; the order stays payable until it expires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentFailed {
    pub order_id: String,
    pub payment_intent_id: ProviderId,
    #[serde(flatten)]
    pub amount: Money,
    pub event_id: ProviderId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The provider refunded (part of) a charge of the intent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentRefunded {
    pub order_id: String,
    pub payment_intent_id: ProviderId,
    /// The charge's amount.
    #[serde(flatten)]
    pub amount: Money,
    pub event_id: ProviderId,
    pub charge_id: ProviderId,
    /// Minor units refunded so far, in the charge's currency.
    pub amount_refunded: i64,
}

// ------------------------------------------------------------------------------------------
// Topic `stock`: the stock context's answers.

/// Stock -> order (topic `stock`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "payload")]
pub enum StockEvent {
    PaidOrderOutOfStock(PaidOrderOutOfStock),
}

impl Topic for StockEvent {
    const TOPIC: &'static str = "stock";
}

/// A line whose units were not all available when a paid order's released reservation was
/// taken again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShortLine {
    pub sku: String,
    pub quantity: i64,
    pub available: i64,
}

/// A paid order's units could not be sold (its reservation was released and they are gone).
/// Sent by `fulfil.lua`, which fills `short`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaidOrderOutOfStock {
    pub order_id: String,
    pub reservation_id: ReservationId,
    #[serde(default, deserialize_with = "lua_list")]
    pub short: Vec<ShortLine>,
}

impl PaidOrderOutOfStock {
    pub const KIND: &'static str = "PaidOrderOutOfStock";
}

/// A list as Lua's cjson writes it: an empty one is an object (`{}`).
fn lua_list<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Vec<T>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either<T> {
        List(Vec<T>),
        Empty(std::collections::BTreeMap<String, serde::de::IgnoredAny>),
    }
    match Either::deserialize(d)? {
        Either::List(l) => Ok(l),
        Either::Empty(m) if m.is_empty() => Ok(Vec::new()),
        Either::Empty(_) => Err(serde::de::Error::custom("expected a list")),
    }
}

// ------------------------------------------------------------------------------------------
// Topic `flash`: flash sale purchases waiting for their order.

/// Stock -> order (topic `flash`). Written by `purchase.lua` (see [`FlashOrderRequested`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "payload")]
pub enum FlashRequest {
    FlashOrderRequested(FlashOrderRequested),
}

impl Topic for FlashRequest {
    const TOPIC: &'static str = crate::flash::TOPIC;
}

/// Serde for a [`Money`] as the fields `total` and `currency` (an order's amount).
mod total {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::money::{Currency, Money};

    #[derive(Serialize, Deserialize)]
    struct Total {
        total: i64,
        currency: Currency,
    }

    pub fn serialize<S: Serializer>(m: &Money, s: S) -> Result<S::Ok, S::Error> {
        Total {
            total: m.minor(),
            currency: m.currency(),
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Money, D::Error> {
        let t = Total::deserialize(d)?;
        Money::new(t.total, t.currency).map_err(serde::de::Error::custom)
    }
}

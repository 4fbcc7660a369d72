//! Stock reservations: what a valid request is, and which status changes are allowed.
//!
//! A reservation holds units of one or more SKUs for a pending order, all or nothing, until it is
//! confirmed (the order was paid: reserved -> sold), released (the order was cancelled: reserved ->
//! available) or it expires (released by the compensator). The reservation id is chosen by the
//! caller, which makes a retried request idempotent.

use std::collections::HashSet;
use std::fmt;

use crate::field::FieldError;
use crate::new_order::UserId;
use crate::sku::Sku;
use crate::stock::Quantity;

/// A caller-chosen id: 1-128 characters of `A-Z a-z 0-9 - _ . :`, not dots only (safe in a URL
/// path segment and a Redis key).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct ReservationId(String);

impl ReservationId {
    pub const MAX_LEN: usize = 128;

    pub fn parse(s: &str) -> Result<Self, String> {
        crate::key_safe::check(s, Self::MAX_LEN, true)?;
        Ok(ReservationId(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

crate::deserialize_by_parse!(ReservationId);

impl fmt::Display for ReservationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One line as the client sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawItem {
    pub sku: String,
    pub quantity: i64,
}

/// `POST /api/stock/reservations` as the client sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawReservation {
    pub reservation_id: String,
    pub items: Vec<RawItem>,
    pub ttl_seconds: Option<i64>,
    /// The customer the units are held for (their hoarding caps apply), if any.
    pub customer_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationItem {
    pub sku: Sku,
    pub quantity: Quantity,
}

/// A valid reservation request: 1..=MAX_ITEMS lines with distinct SKUs and a bounded TTL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationRequest {
    pub id: ReservationId,
    pub items: Vec<ReservationItem>,
    pub ttl_seconds: u32,
    /// Whose holdings this reservation counts towards (hoarding caps); `None`: nobody's.
    pub customer: Option<UserId>,
}

impl ReservationRequest {
    pub const MAX_ITEMS: usize = 100;
    pub const DEFAULT_TTL_SECONDS: u32 = 900;
    pub const MAX_TTL_SECONDS: u32 = 86_400;

    pub fn parse(raw: RawReservation) -> Result<Self, FieldError> {
        let id = ReservationId::parse(&raw.reservation_id)
            .map_err(|e| FieldError::new("reservation_id", e))?;
        if raw.items.is_empty() {
            return Err(FieldError::new("items", "must contain at least one item"));
        }
        if raw.items.len() > Self::MAX_ITEMS {
            return Err(FieldError::new(
                "items",
                format!("must contain at most {} items", Self::MAX_ITEMS),
            ));
        }
        let mut seen = HashSet::new();
        let mut items = Vec::with_capacity(raw.items.len());
        for (i, item) in raw.items.into_iter().enumerate() {
            let sku = Sku::parse(&item.sku)
                .map_err(|e| FieldError::new(format!("items[{i}].sku"), e.to_string()))?;
            if !seen.insert(sku.clone()) {
                return Err(FieldError::new(
                    format!("items[{i}].sku"),
                    format!("duplicate sku {sku}: put the whole quantity on one line"),
                ));
            }
            let quantity = Quantity::parse(item.quantity)
                .map_err(|e| FieldError::new(format!("items[{i}].quantity"), e.to_string()))?;
            items.push(ReservationItem { sku, quantity });
        }
        let ttl_seconds = match raw.ttl_seconds {
            None => Self::DEFAULT_TTL_SECONDS,
            Some(t) if t >= 1 && t <= i64::from(Self::MAX_TTL_SECONDS) => t as u32,
            Some(_) => {
                return Err(FieldError::new(
                    "ttl_seconds",
                    format!("must be between 1 and {}", Self::MAX_TTL_SECONDS),
                ))
            }
        };
        let customer = raw
            .customer_id
            .as_deref()
            .map(UserId::parse)
            .transpose()
            .map_err(|e| FieldError::new("customer_id", e))?;
        Ok(ReservationRequest {
            id,
            items,
            ttl_seconds,
            customer,
        })
    }

    /// A canonical rendering of what was asked, stored with the reservation: a retry with the
    /// same id must ask for the same thing, or it is a different request reusing an id.
    pub fn fingerprint(&self) -> String {
        let mut out = format!("ttl={}", self.ttl_seconds);
        for item in &self.items {
            out.push_str(&format!(";{}={}", item.sku, item.quantity.get()));
        }
        out
    }
}

/// Where a reservation is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReservationStatus {
    Reserved,
    Confirmed,
    Released,
}

/// What a caller (or the clock) asks of a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservationAction {
    Confirm,
    Release,
    Expire,
}

/// The decision for one action on one status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Move to this status (and move the units accordingly).
    To(ReservationStatus),
    /// Already there, or nothing to do: answer with the current state, change nothing.
    Unchanged,
}

/// An action the current status refuses (HTTP 409).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransitionRefused {
    pub from: ReservationStatus,
    pub action: ReservationAction,
}

impl fmt::Display for TransitionRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = match self.action {
            ReservationAction::Confirm => "confirmed",
            ReservationAction::Release => "released",
            ReservationAction::Expire => "expired",
        };
        write!(
            f,
            "reservation is {} and cannot be {verb}",
            self.from.as_str()
        )
    }
}

impl std::error::Error for TransitionRefused {}

impl ReservationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReservationStatus::Reserved => "RESERVED",
            ReservationStatus::Confirmed => "CONFIRMED",
            ReservationStatus::Released => "RELEASED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "RESERVED" => Some(ReservationStatus::Reserved),
            "CONFIRMED" => Some(ReservationStatus::Confirmed),
            "RELEASED" => Some(ReservationStatus::Released),
            _ => None,
        }
    }

    /// The whole transition table; the Lua scripts `confirm.lua`, `release.lua` and `expire.lua`
    /// implement exactly this, atomically with the unit moves. Repeating an action that already
    /// happened is `Unchanged` (idempotent); undoing a final decision is refused.
    pub fn on(self, action: ReservationAction) -> Result<Transition, TransitionRefused> {
        use ReservationAction as A;
        use ReservationStatus as S;
        match (self, action) {
            (S::Reserved, A::Confirm) => Ok(Transition::To(S::Confirmed)),
            (S::Reserved, A::Release | A::Expire) => Ok(Transition::To(S::Released)),
            (S::Confirmed, A::Confirm) => Ok(Transition::Unchanged),
            (S::Released, A::Release | A::Expire) => Ok(Transition::Unchanged),
            // A sold reservation is not held stock any more: the clock has nothing to release.
            (S::Confirmed, A::Expire) => Ok(Transition::Unchanged),
            (from @ S::Confirmed, action @ A::Release)
            | (from @ S::Released, action @ A::Confirm) => Err(TransitionRefused { from, action }),
        }
    }
}

/// How long past its expiry the TTL sweep leaves a RESERVED reservation alone before releasing
/// it: the order context expires an unpaid order at the reservation's `expires_at` and says so
/// (`OrderExpired` releases at once), so the sweep is the last resort, and the grace covers the
/// lag between the order context accepting a payment just before the deadline and its
/// `OrderPaid` reaching the stock context. One rule for every sweep: the stock receiver's and
/// `POST /api/stock/reservations/expire` alike.
pub const EXPIRY_GRACE_MS: u64 = 10 * 60 * 1000;

/// What a paid order's `OrderPaid` does to its reservation. The order context's acceptance of
/// the payment is final (the money is taken), so the stock follows it even where the
/// [`ReservationStatus::on`] table would refuse a confirm: a late message must not leave a paid
/// order with nothing sold. `fulfil.lua` implements exactly this, atomically with the unit moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fulfilment {
    /// Still reserved (even past its expiry: the units are still held): reserved -> sold.
    Confirm,
    /// Sold already (the same message again): nothing moves.
    AlreadySold,
    /// Released meanwhile (cancelled by a race, or expired before the message came): take the
    /// same units from `available` again, all lines or none, and sell them. When they are not
    /// all there, nothing moves and the reservation is marked short for good, so a redelivered
    /// message decides the same way and an operator settles it (a refund).
    Retake,
}

impl ReservationStatus {
    pub fn fulfil(self) -> Fulfilment {
        match self {
            ReservationStatus::Reserved => Fulfilment::Confirm,
            ReservationStatus::Confirmed => Fulfilment::AlreadySold,
            ReservationStatus::Released => Fulfilment::Retake,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn raw() -> RawReservation {
        RawReservation {
            reservation_id: "order-1:attempt.2_x".into(),
            items: vec![
                RawItem {
                    sku: "A".into(),
                    quantity: 2,
                },
                RawItem {
                    sku: "B".into(),
                    quantity: 1,
                },
            ],
            ttl_seconds: Some(60),
            customer_id: None,
        }
    }

    #[test]
    fn a_customer_is_a_user_id() {
        let r = ReservationRequest::parse(RawReservation {
            customer_id: Some("cust-1".into()),
            ..raw()
        })
        .unwrap();
        assert_eq!(r.customer.unwrap().as_str(), "cust-1");
        let bad = RawReservation {
            customer_id: Some("no spaces".into()),
            ..raw()
        };
        assert_eq!(field(bad), "customer_id");
    }

    fn field(r: RawReservation) -> String {
        ReservationRequest::parse(r).unwrap_err().field
    }

    #[test]
    fn parses_a_valid_request() {
        let r = ReservationRequest::parse(raw()).unwrap();
        assert_eq!(r.id.as_str(), "order-1:attempt.2_x");
        assert_eq!(r.items.len(), 2);
        assert_eq!(r.ttl_seconds, 60);
        assert_eq!(r.fingerprint(), "ttl=60;A=2;B=1");
        let r = ReservationRequest::parse(RawReservation {
            ttl_seconds: None,
            ..raw()
        })
        .unwrap();
        assert_eq!(r.ttl_seconds, ReservationRequest::DEFAULT_TTL_SECONDS);
    }

    #[test]
    fn names_the_offending_field() {
        assert_eq!(
            field(RawReservation {
                reservation_id: "".into(),
                ..raw()
            }),
            "reservation_id"
        );
        assert_eq!(
            field(RawReservation {
                reservation_id: "a/b".into(),
                ..raw()
            }),
            "reservation_id"
        );
        assert_eq!(
            field(RawReservation {
                reservation_id: "x".repeat(129),
                ..raw()
            }),
            "reservation_id"
        );
        assert_eq!(
            field(RawReservation {
                items: vec![],
                ..raw()
            }),
            "items"
        );
        let many = (0..101)
            .map(|i| RawItem {
                sku: format!("S{i}"),
                quantity: 1,
            })
            .collect();
        assert_eq!(
            field(RawReservation {
                items: many,
                ..raw()
            }),
            "items"
        );
        let mut r = raw();
        r.items[1].quantity = 0;
        assert_eq!(field(r), "items[1].quantity");
        let mut r = raw();
        r.items[0].quantity = -5;
        assert_eq!(field(r), "items[0].quantity");
        let mut r = raw();
        r.items[1].sku = "bad sku".into();
        assert_eq!(field(r), "items[1].sku");
        let mut r = raw();
        r.items[1].sku = "A".into();
        assert_eq!(field(r), "items[1].sku");
        assert_eq!(
            field(RawReservation {
                ttl_seconds: Some(0),
                ..raw()
            }),
            "ttl_seconds"
        );
        assert_eq!(
            field(RawReservation {
                ttl_seconds: Some(86_401),
                ..raw()
            }),
            "ttl_seconds"
        );
    }

    #[test]
    fn transition_table() {
        use ReservationAction as A;
        use ReservationStatus as S;
        assert_eq!(S::Reserved.on(A::Confirm), Ok(Transition::To(S::Confirmed)));
        assert_eq!(S::Reserved.on(A::Release), Ok(Transition::To(S::Released)));
        assert_eq!(S::Reserved.on(A::Expire), Ok(Transition::To(S::Released)));
        assert_eq!(S::Confirmed.on(A::Confirm), Ok(Transition::Unchanged));
        assert_eq!(S::Released.on(A::Release), Ok(Transition::Unchanged));
        assert_eq!(S::Released.on(A::Expire), Ok(Transition::Unchanged));
        assert_eq!(S::Confirmed.on(A::Expire), Ok(Transition::Unchanged));
        assert!(S::Confirmed.on(A::Release).is_err());
        assert!(S::Released.on(A::Confirm).is_err());
        for s in [S::Reserved, S::Confirmed, S::Released] {
            assert_eq!(S::parse(s.as_str()), Some(s));
        }
        assert_eq!(S::parse("reserved"), None);
    }

    #[test]
    fn a_paid_order_is_fulfilled_from_any_status() {
        use ReservationStatus as S;
        assert_eq!(S::Reserved.fulfil(), Fulfilment::Confirm);
        assert_eq!(S::Confirmed.fulfil(), Fulfilment::AlreadySold);
        assert_eq!(S::Released.fulfil(), Fulfilment::Retake);
    }

    fn status() -> impl Strategy<Value = ReservationStatus> {
        prop_oneof![
            Just(ReservationStatus::Reserved),
            Just(ReservationStatus::Confirmed),
            Just(ReservationStatus::Released),
        ]
    }

    fn action() -> impl Strategy<Value = ReservationAction> {
        prop_oneof![
            Just(ReservationAction::Confirm),
            Just(ReservationAction::Release),
            Just(ReservationAction::Expire),
        ]
    }

    proptest! {
        /// Any sequence of actions: a final status never changes again, and applying the same
        /// action twice in a row is a no-op the second time.
        #[test]
        fn final_states_are_final_and_actions_idempotent(actions in proptest::collection::vec(action(), 1..20)) {
            let mut s = ReservationStatus::Reserved;
            let mut last: Option<ReservationAction> = None;
            for a in actions {
                let before = s;
                match s.on(a) {
                    Ok(Transition::To(next)) => {
                        prop_assert_eq!(before, ReservationStatus::Reserved);
                        s = next;
                    }
                    Ok(Transition::Unchanged) => {}
                    Err(e) => prop_assert_ne!(e.from, ReservationStatus::Reserved),
                }
                if last == Some(a) {
                    prop_assert_eq!(s, before);
                }
                last = Some(a);
            }
        }

        #[test]
        fn only_reserved_moves(s in status(), a in action()) {
            if let Ok(Transition::To(_)) = s.on(a) {
                prop_assert_eq!(s, ReservationStatus::Reserved);
            }
        }
    }
}

//! Coupons: what a coupon takes off an order, when it may be used, and the life of one
//! redemption under TCC (try / confirm / cancel).
//!
//! A redemption is tried while the order is created (the coupon's capacity is held for that
//! order), confirmed when the order is paid and cancelled when it is cancelled or expires. The
//! three steps arrive from different places (a request, messages, the compensator), may arrive
//! twice and in any order, so [`RedemptionStatus::on`] is a total table: every step is
//! idempotent, a cancel that arrives before its try is remembered (an "empty cancel") and the
//! late try is then refused (no hanging hold), and a confirmed redemption is never cancelled.

use std::fmt;

use crate::field::FieldError;
use crate::money::{Currency, Money};
use crate::new_order::{CouponCode, UserId};
use crate::reservation::ReservationId;

/// The caller's id of one redemption (the order's): the rules of a reservation id (1-128 of
/// `A-Z a-z 0-9 - _ . :`, not dots only), so it is safe in a URL path segment.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct RedemptionId(String);

impl RedemptionId {
    pub fn parse(s: &str) -> Result<Self, String> {
        ReservationId::parse(s).map(|id| RedemptionId(id.as_str().to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One coupon on one order, as the coupon context keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redemption {
    pub code: CouponCode,
    pub id: RedemptionId,
    pub status: RedemptionStatus,
    /// `None` for a cancel that arrived before any try.
    pub held: Option<Held>,
}

/// What a try held: for whom, on which subtotal, and the discount it granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub user: UserId,
    pub subtotal: Money,
    pub discount: Money,
}

impl Redemption {
    /// Whether a try of `user` on `subtotal` is this redemption's own try again (its answer is
    /// replayed, even if the coupon's rules changed since) rather than another request reusing
    /// its id.
    pub fn is_retry_of(&self, user: &UserId, subtotal: Money) -> bool {
        self.held
            .as_ref()
            .is_some_and(|h| &h.user == user && h.subtotal == subtotal)
    }
}

/// What a coupon takes off the subtotal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discount {
    /// A whole percentage, 1..=100, of the subtotal, rounded down to the minor unit (the shop
    /// never gives away more than it says).
    Percent(u8),
    /// A fixed amount in one currency, never more than the subtotal.
    Amount(Money),
}

impl Discount {
    /// The discount on `subtotal`: at most the subtotal, in its currency. `None` when the
    /// coupon is in another currency.
    pub fn on(&self, subtotal: Money) -> Option<Money> {
        let minor = match *self {
            Discount::Percent(p) => {
                // i128: 2^53 * 100 does not fit an i64.
                (i128::from(subtotal.minor()) * i128::from(p) / 100) as i64
            }
            Discount::Amount(amount) if amount.currency() == subtotal.currency() => {
                amount.minor().min(subtotal.minor())
            }
            Discount::Amount(_) => return None,
        };
        Money::new(minor, subtotal.currency()).ok()
    }
}

/// A coupon as an admin wrote it (`PUT /api/coupons/{code}`), before it is checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawCoupon {
    pub percent_off: Option<i64>,
    pub amount_off: Option<i64>,
    pub currency: String,
    pub min_subtotal: Option<i64>,
    pub max_redemptions: Option<i64>,
    pub per_customer: Option<i64>,
    pub starts_at_ms: Option<i64>,
    pub ends_at_ms: Option<i64>,
}

/// A valid coupon. It is for orders in one currency (a campaign is per market): a percentage
/// too, so a minimum subtotal always has a currency to mean something in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coupon {
    pub code: CouponCode,
    pub currency: Currency,
    pub discount: Discount,
    /// Orders below this subtotal cannot use it (in the coupon's currency).
    pub min_subtotal: Option<Money>,
    /// Redemptions held or confirmed at most, over every customer; `None`: unlimited.
    pub max_redemptions: Option<u32>,
    /// Redemptions held or confirmed at most per customer.
    pub per_customer: u32,
    pub starts_at_ms: Option<i64>,
    pub ends_at_ms: Option<i64>,
}

impl Coupon {
    pub const MAX_REDEMPTIONS: i64 = 100_000_000;
    pub const DEFAULT_PER_CUSTOMER: u32 = 1;

    pub fn parse(code: CouponCode, raw: RawCoupon) -> Result<Coupon, FieldError> {
        let currency = Currency::parse(&raw.currency)
            .map_err(|e| FieldError::new("currency", e.to_string()))?;
        let money = |field: &str, minor: i64| {
            Money::new(minor, currency).map_err(|e| FieldError::new(field, e.to_string()))
        };
        let discount = match (raw.percent_off, raw.amount_off) {
            (Some(p), None) if (1..=100).contains(&p) => Discount::Percent(p as u8),
            (Some(_), None) => return Err(FieldError::new("percent_off", "must be 1-100")),
            (None, Some(a)) if a >= 1 => Discount::Amount(money("amount_off", a)?),
            (None, Some(_)) => return Err(FieldError::new("amount_off", "must be at least 1")),
            _ => {
                return Err(FieldError::new(
                    "percent_off",
                    "exactly one of percent_off and amount_off is required",
                ))
            }
        };
        let min_subtotal = raw
            .min_subtotal
            .map(|m| money("min_subtotal", m))
            .transpose()?;
        let count = |field: &str, n: Option<i64>, max: i64| match n {
            Some(n) if !(1..=max).contains(&n) => {
                Err(FieldError::new(field, format!("must be 1-{max}")))
            }
            n => Ok(n.map(|n| n as u32)),
        };
        let max_redemptions = count(
            "max_redemptions",
            raw.max_redemptions,
            Self::MAX_REDEMPTIONS,
        )?;
        let per_customer = count("per_customer", raw.per_customer, Self::MAX_REDEMPTIONS)?
            .unwrap_or(Self::DEFAULT_PER_CUSTOMER);
        if let (Some(s), Some(e)) = (raw.starts_at_ms, raw.ends_at_ms) {
            if e <= s {
                return Err(FieldError::new("ends_at", "must be after starts_at"));
            }
        }
        Ok(Coupon {
            code,
            currency,
            discount,
            min_subtotal,
            max_redemptions,
            per_customer,
            starts_at_ms: raw.starts_at_ms,
            ends_at_ms: raw.ends_at_ms,
        })
    }

    /// What this coupon takes off `subtotal` at `now_ms`, or why it cannot be used. Capacity
    /// (max redemptions, per customer) is the store's to check, atomically with the hold.
    pub fn discount_for(&self, subtotal: Money, now_ms: i64) -> Result<Money, CouponRefused> {
        if self.starts_at_ms.is_some_and(|s| now_ms < s) {
            return Err(CouponRefused::NotYetValid);
        }
        if self.ends_at_ms.is_some_and(|e| now_ms >= e) {
            return Err(CouponRefused::Expired);
        }
        if subtotal.currency() != self.currency {
            return Err(CouponRefused::OtherCurrency);
        }
        let discount = self
            .discount
            .on(subtotal)
            .ok_or(CouponRefused::OtherCurrency)?;
        match self.min_subtotal {
            Some(min) if subtotal.minor() < min.minor() => Err(CouponRefused::BelowMinimum(min)),
            _ => Ok(discount),
        }
    }
}

/// Why a coupon cannot be used for an order (HTTP 409, the reason as the problem type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CouponRefused {
    NotYetValid,
    Expired,
    OtherCurrency,
    BelowMinimum(Money),
    /// Every redemption is held or used.
    SoldOut,
    /// This customer has used it as often as allowed.
    CustomerLimit,
}

impl fmt::Display for CouponRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CouponRefused::NotYetValid => f.write_str("the coupon is not valid yet"),
            CouponRefused::Expired => f.write_str("the coupon has expired"),
            CouponRefused::OtherCurrency => {
                f.write_str("the coupon is for orders in another currency")
            }
            CouponRefused::BelowMinimum(m) => write!(
                f,
                "the coupon needs a subtotal of at least {} {}",
                m.minor(),
                m.currency().as_str()
            ),
            CouponRefused::SoldOut => f.write_str("the coupon has no redemptions left"),
            CouponRefused::CustomerLimit => {
                f.write_str("the coupon was already used as often as allowed by this customer")
            }
        }
    }
}

impl CouponRefused {
    /// The problem type's last segment.
    pub fn slug(&self) -> &'static str {
        match self {
            CouponRefused::NotYetValid => "coupon-not-yet-valid",
            CouponRefused::Expired => "coupon-expired",
            CouponRefused::OtherCurrency => "coupon-currency",
            CouponRefused::BelowMinimum(_) => "coupon-minimum",
            CouponRefused::SoldOut => "coupon-sold-out",
            CouponRefused::CustomerLimit => "coupon-customer-limit",
        }
    }
}

/// Where one redemption (one coupon on one order) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RedemptionStatus {
    /// Tried: one unit of the coupon's capacity is held for the order.
    Held,
    /// The order was paid: the redemption counts for good.
    Confirmed,
    /// The order will not be paid: the hold is given back. Also recorded for a cancel that
    /// arrived before its try, so that try is refused when it comes.
    Cancelled,
}

/// A TCC step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RedemptionAction {
    Try,
    Confirm,
    Cancel,
}

/// What a step does, from a status or from nothing (no record yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedemptionStep {
    /// Record this status (and move capacity accordingly).
    To(RedemptionStatus),
    /// Already done: answer with the current state, change nothing.
    Unchanged,
}

/// A step the current state refuses (HTTP 409).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedemptionRefused {
    pub from: Option<RedemptionStatus>,
    pub action: RedemptionAction,
}

impl fmt::Display for RedemptionRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let from = self.from.map_or("unknown", RedemptionStatus::as_str);
        let verb = match self.action {
            RedemptionAction::Try => "tried",
            RedemptionAction::Confirm => "confirmed",
            RedemptionAction::Cancel => "cancelled",
        };
        write!(f, "redemption is {from} and cannot be {verb}")
    }
}

impl std::error::Error for RedemptionRefused {}

impl RedemptionStatus {
    pub const ALL: [RedemptionStatus; 3] = [
        RedemptionStatus::Held,
        RedemptionStatus::Confirmed,
        RedemptionStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RedemptionStatus::Held => "HELD",
            RedemptionStatus::Confirmed => "CONFIRMED",
            RedemptionStatus::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether it takes one unit of the coupon's capacity.
    pub fn holds_capacity(self) -> bool {
        !matches!(self, RedemptionStatus::Cancelled)
    }

    /// The whole TCC table, from `current` (`None`: no record of this redemption yet).
    pub fn on(
        current: Option<RedemptionStatus>,
        action: RedemptionAction,
    ) -> Result<RedemptionStep, RedemptionRefused> {
        use RedemptionAction as A;
        use RedemptionStatus as S;
        let refused = Err(RedemptionRefused {
            from: current,
            action,
        });
        match (current, action) {
            (None, A::Try) => Ok(RedemptionStep::To(S::Held)),
            // An empty cancel: remembered, so the try it overtook is refused when it arrives.
            (None, A::Cancel) => Ok(RedemptionStep::To(S::Cancelled)),
            (None, A::Confirm) => refused,
            (Some(S::Held), A::Confirm) => Ok(RedemptionStep::To(S::Confirmed)),
            (Some(S::Held), A::Cancel) => Ok(RedemptionStep::To(S::Cancelled)),
            // A retried try answers what the first one decided.
            (Some(S::Held | S::Confirmed), A::Try) => Ok(RedemptionStep::Unchanged),
            (Some(S::Confirmed), A::Confirm) | (Some(S::Cancelled), A::Cancel) => {
                Ok(RedemptionStep::Unchanged)
            }
            (Some(S::Confirmed), A::Cancel)
            | (Some(S::Cancelled), A::Try)
            | (Some(S::Cancelled), A::Confirm) => refused,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn eur(minor: i64) -> Money {
        Money::new(minor, Currency::parse("EUR").unwrap()).unwrap()
    }

    fn usd(minor: i64) -> Money {
        Money::new(minor, Currency::parse("USD").unwrap()).unwrap()
    }

    fn code() -> CouponCode {
        CouponCode::parse("SAVE10").unwrap()
    }

    fn percent(p: i64) -> RawCoupon {
        RawCoupon {
            percent_off: Some(p),
            currency: "EUR".into(),
            ..Default::default()
        }
    }

    fn field(raw: RawCoupon) -> String {
        Coupon::parse(code(), raw).unwrap_err().field
    }

    #[test]
    fn parses_percent_and_amount_coupons_and_names_the_bad_field() {
        let c = Coupon::parse(code(), percent(10)).unwrap();
        assert_eq!(c.discount, Discount::Percent(10));
        assert_eq!(c.per_customer, 1);
        assert_eq!(c.max_redemptions, None);
        let amount = RawCoupon {
            amount_off: Some(500),
            currency: "EUR".into(),
            ..Default::default()
        };
        assert_eq!(
            Coupon::parse(code(), amount.clone()).unwrap().discount,
            Discount::Amount(eur(500))
        );

        let neither = RawCoupon {
            currency: "EUR".into(),
            ..Default::default()
        };
        assert_eq!(field(neither), "percent_off");
        let both = RawCoupon {
            percent_off: Some(10),
            ..amount.clone()
        };
        assert_eq!(field(both), "percent_off");
        for p in [0, 101, -5] {
            assert_eq!(field(percent(p)), "percent_off", "{p}");
        }
        for bad in ["", "eur", "EURO"] {
            let raw = RawCoupon {
                currency: bad.into(),
                ..amount.clone()
            };
            assert_eq!(field(raw), "currency", "{bad:?}");
        }
        let too_much = RawCoupon {
            amount_off: Some(Money::MAX_MINOR + 1),
            ..amount.clone()
        };
        assert_eq!(field(too_much), "amount_off");
        let zero = RawCoupon {
            amount_off: Some(0),
            ..amount.clone()
        };
        assert_eq!(field(zero), "amount_off");
        let bad_limit = RawCoupon {
            max_redemptions: Some(0),
            ..amount.clone()
        };
        assert_eq!(field(bad_limit), "max_redemptions");
        let bad_per = RawCoupon {
            per_customer: Some(-1),
            ..amount.clone()
        };
        assert_eq!(field(bad_per), "per_customer");
        let backwards = RawCoupon {
            starts_at_ms: Some(10),
            ends_at_ms: Some(10),
            ..amount
        };
        assert_eq!(field(backwards), "ends_at");
    }

    #[test]
    fn a_coupon_is_refused_outside_its_window_currency_and_minimum() {
        let c = Coupon {
            code: code(),
            currency: eur(0).currency(),
            discount: Discount::Amount(eur(500)),
            min_subtotal: Some(eur(2000)),
            max_redemptions: None,
            per_customer: 1,
            starts_at_ms: Some(100),
            ends_at_ms: Some(200),
        };
        assert_eq!(c.discount_for(eur(3000), 150), Ok(eur(500)));
        assert_eq!(c.discount_for(eur(2000), 100), Ok(eur(500)));
        assert_eq!(
            c.discount_for(eur(3000), 99),
            Err(CouponRefused::NotYetValid)
        );
        assert_eq!(c.discount_for(eur(3000), 200), Err(CouponRefused::Expired));
        assert_eq!(
            c.discount_for(usd(3000), 150),
            Err(CouponRefused::OtherCurrency)
        );
        assert_eq!(
            c.discount_for(eur(1999), 150),
            Err(CouponRefused::BelowMinimum(eur(2000)))
        );
        // A percentage coupon is for orders in its currency too: refused, not converted.
        let p = Coupon {
            discount: Discount::Percent(10),
            ..c
        };
        assert_eq!(
            p.discount_for(usd(3000), 150),
            Err(CouponRefused::OtherCurrency)
        );
    }

    #[test]
    fn percentages_round_down_and_stay_exact_at_the_largest_amount() {
        assert_eq!(Discount::Percent(10).on(eur(1999)), Some(eur(199)));
        assert_eq!(Discount::Percent(100).on(eur(1999)), Some(eur(1999)));
        let max = eur(Money::MAX_MINOR);
        assert_eq!(
            Discount::Percent(50).on(max),
            Some(eur(Money::MAX_MINOR / 2))
        );
        assert_eq!(Discount::Amount(eur(500)).on(eur(300)), Some(eur(300)));
        assert_eq!(Discount::Amount(eur(500)).on(usd(300)), None);
    }

    #[test]
    fn a_retry_is_the_same_customer_and_subtotal_and_ids_are_path_safe() {
        let u1 = UserId::parse("u1").unwrap();
        let r = Redemption {
            code: code(),
            id: RedemptionId::parse("ord_1").unwrap(),
            status: RedemptionStatus::Held,
            held: Some(Held {
                user: u1.clone(),
                subtotal: eur(5000),
                discount: eur(500),
            }),
        };
        assert!(r.is_retry_of(&u1, eur(5000)));
        assert!(!r.is_retry_of(&u1, eur(5001)));
        assert!(!r.is_retry_of(&UserId::parse("u2").unwrap(), eur(5000)));
        let empty_cancel = Redemption { held: None, ..r };
        assert!(!empty_cancel.is_retry_of(&u1, eur(5000)));
        for bad in [".", "..", "a/b", ""] {
            assert!(RedemptionId::parse(bad).is_err(), "{bad:?}");
        }
        assert!(RedemptionId::parse(".a.").is_ok());
    }

    #[test]
    fn the_tcc_table() {
        use RedemptionAction as A;
        use RedemptionStatus as S;
        let to = |s| Ok(RedemptionStep::To(s));
        assert_eq!(S::on(None, A::Try), to(S::Held));
        assert_eq!(S::on(None, A::Cancel), to(S::Cancelled));
        assert!(S::on(None, A::Confirm).is_err());
        assert_eq!(S::on(Some(S::Held), A::Confirm), to(S::Confirmed));
        assert_eq!(S::on(Some(S::Held), A::Cancel), to(S::Cancelled));
        assert_eq!(S::on(Some(S::Held), A::Try), Ok(RedemptionStep::Unchanged));
        assert_eq!(
            S::on(Some(S::Confirmed), A::Try),
            Ok(RedemptionStep::Unchanged)
        );
        assert!(S::on(Some(S::Confirmed), A::Cancel).is_err());
        assert!(
            S::on(Some(S::Cancelled), A::Try).is_err(),
            "no hanging hold"
        );
        assert!(S::on(Some(S::Cancelled), A::Confirm).is_err());
        assert_eq!(
            S::on(Some(S::Cancelled), A::Cancel),
            Ok(RedemptionStep::Unchanged)
        );
        for s in S::ALL {
            assert_eq!(S::parse(s.as_str()), Some(s));
        }
        assert_eq!(
            RedemptionRefused {
                from: None,
                action: A::Confirm
            }
            .to_string(),
            "redemption is unknown and cannot be confirmed"
        );
    }

    fn action() -> impl Strategy<Value = RedemptionAction> {
        proptest::sample::select(vec![
            RedemptionAction::Try,
            RedemptionAction::Confirm,
            RedemptionAction::Cancel,
        ])
    }

    proptest! {
        /// Whatever order and however often the steps arrive: a final status (CONFIRMED,
        /// CANCELLED) never changes, every step repeated at once changes nothing, and a
        /// redemption is confirmed only if a try came before any cancel.
        #[test]
        fn steps_in_any_order_and_repeated(actions in proptest::collection::vec(action(), 1..20)) {
            let mut state: Option<RedemptionStatus> = None;
            let mut tried_before_cancel = false;
            let mut cancelled = false;
            for a in actions {
                let before = state;
                if let Ok(RedemptionStep::To(next)) = RedemptionStatus::on(state, a) {
                    prop_assert!(matches!(before, None | Some(RedemptionStatus::Held)));
                    state = Some(next);
                }
                match a {
                    RedemptionAction::Try if !cancelled => tried_before_cancel = true,
                    RedemptionAction::Cancel => cancelled = true,
                    _ => {}
                }
                // The same step again at once changes nothing.
                let again = RedemptionStatus::on(state, a);
                prop_assert!(!matches!(again, Ok(RedemptionStep::To(_))), "{:?} {:?}", a, again);
                if state == Some(RedemptionStatus::Confirmed) {
                    prop_assert!(tried_before_cancel);
                }
            }
        }

        /// Percentages never give more than the subtotal and are exact floors.
        #[test]
        fn percent_discount_is_an_exact_floor(minor in 0i64..=Money::MAX_MINOR, p in 1u8..=100) {
            let d = Discount::Percent(p).on(eur(minor)).unwrap();
            prop_assert!(d.minor() <= minor);
            let exact = i128::from(minor) * i128::from(p);
            prop_assert!(i128::from(d.minor()) * 100 <= exact);
            prop_assert!(exact < (i128::from(d.minor()) + 1) * 100);
        }
    }
}

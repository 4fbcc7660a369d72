//! An order once it is placed: what the order context stores and every command reads back.
//!
//! Storage returns this type, never a JSON view, so a command decides on a typed
//! [`OrderStatus`] and [`Money`] instead of parsing strings back; the JSON view is built from it
//! at the HTTP edge only.

use crate::money::{Currency, Money};
use crate::new_order::{CouponCode, NewOrder, Quantity, UserId};
use crate::order::{OrderCommand, OrderState, OrderStatus, Outcome, TransitionRefused};
use crate::pricing::PricedOrder;
use crate::sku::Sku;

/// One line of a placed order, priced when it was placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedLine {
    pub sku: Sku,
    pub quantity: Quantity,
    pub unit_price: Money,
    pub line_total: Money,
}

/// The payment that paid the order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paid {
    pub payment_id: String,
    pub at_ms: i64,
}

/// A placed order. Amounts are all in `currency`; times are milliseconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedOrder {
    pub order_id: String,
    pub user_id: UserId,
    /// Status and version, changed only through [`PlacedOrder::apply`].
    pub state: OrderState,
    pub lines: Vec<PlacedLine>,
    pub currency: Currency,
    pub subtotal: Money,
    pub discount: Money,
    pub total: Money,
    pub coupon_code: Option<CouponCode>,
    /// The stock reservation holding its units.
    pub reservation_id: String,
    pub created_ms: i64,
    /// The payment deadline (the reservation's own expiry).
    pub expires_ms: i64,
    pub paid: Option<Paid>,
    /// Why the shop asked for the order's money to go back (the last `RefundRequired`), if it
    /// did.
    pub refund_reason: Option<crate::messages::RefundReason>,
}

impl PlacedOrder {
    /// A new order for `request`, priced by `priced`: awaiting payment, at version 1.
    pub fn place(
        order_id: String,
        request: &NewOrder,
        priced: PricedOrder,
        reservation_id: String,
        created_ms: i64,
        expires_ms: i64,
    ) -> Self {
        PlacedOrder {
            order_id,
            user_id: request.user_id.clone(),
            state: OrderState::new(),
            lines: priced
                .lines
                .into_iter()
                .map(|l| PlacedLine {
                    sku: l.sku,
                    quantity: l.quantity,
                    unit_price: l.unit_price,
                    line_total: l.line_total,
                })
                .collect(),
            currency: priced.currency,
            subtotal: priced.subtotal,
            discount: priced.discount,
            total: priced.total,
            coupon_code: request.coupon_code.clone(),
            reservation_id,
            created_ms,
            expires_ms,
            paid: None,
            refund_reason: None,
        }
    }

    pub fn status(&self) -> OrderStatus {
        self.state.status
    }

    pub fn version(&self) -> i64 {
        self.state.version
    }

    /// What `command` does to this order (see [`OrderState::apply`]).
    pub fn apply(&self, command: OrderCommand) -> Result<Outcome, TransitionRefused> {
        self.state.apply(command)
    }

    /// Whether `payment_id` is the payment that already paid this order.
    pub fn is_paid_by(&self, payment_id: &str) -> bool {
        self.paid
            .as_ref()
            .is_some_and(|p| p.payment_id == payment_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::new_order::RawItem;
    use crate::pricing;

    fn placed() -> PlacedOrder {
        let raw = [
            RawItem {
                sku: "SKU-A",
                quantity: 2,
            },
            RawItem {
                sku: "SKU-B",
                quantity: 1,
            },
        ];
        let request = NewOrder::parse("u-1", &raw, Some("WELCOME")).unwrap();
        let eur = Currency::parse("EUR").unwrap();
        let catalog = [
            (Sku::parse("SKU-A").unwrap(), Money::new(250, eur).unwrap()),
            (Sku::parse("SKU-B").unwrap(), Money::new(100, eur).unwrap()),
        ];
        let priced = pricing::price(&request, &catalog).unwrap();
        PlacedOrder::place(
            "ord_1".into(),
            &request,
            priced,
            "rsv-1".into(),
            1_000,
            901_000,
        )
    }

    #[test]
    fn a_placed_order_awaits_payment_at_version_one() {
        let o = placed();
        assert_eq!(o.status(), OrderStatus::PendingPayment);
        assert_eq!(o.version(), 1);
        assert_eq!(o.paid, None);
        assert_eq!((o.created_ms, o.expires_ms), (1_000, 901_000));
        assert_eq!(
            o.coupon_code.as_ref().map(CouponCode::as_str),
            Some("WELCOME")
        );
    }

    #[test]
    fn lines_and_totals_come_from_the_pricing_in_request_order() {
        let o = placed();
        let lines: Vec<(&str, u32, i64, i64)> = o
            .lines
            .iter()
            .map(|l| {
                let (p, t) = (l.unit_price.minor(), l.line_total.minor());
                (l.sku.as_str(), l.quantity.get(), p, t)
            })
            .collect();
        assert_eq!(lines, [("SKU-A", 2, 250, 500), ("SKU-B", 1, 100, 100)]);
        assert_eq!(o.currency.as_str(), "EUR");
        assert_eq!((o.subtotal.minor(), o.discount.minor()), (600, 0));
        assert_eq!(o.total.minor(), 600);
    }

    #[test]
    fn commands_go_through_the_state_machine() {
        let o = placed();
        let Ok(Outcome::Changed(next)) = o.apply(OrderCommand::Cancel) else {
            panic!("a pending order can be cancelled");
        };
        assert_eq!((next.status, next.version), (OrderStatus::Cancelled, 2));
        assert!(o.apply(OrderCommand::Ship).is_err());
    }

    #[test]
    fn knows_the_payment_that_paid_it() {
        let mut o = placed();
        assert!(!o.is_paid_by("pi_1"));
        o.paid = Some(Paid {
            payment_id: "pi_1".into(),
            at_ms: 5,
        });
        assert!(o.is_paid_by("pi_1"));
        assert!(!o.is_paid_by("pi_2"));
    }
}

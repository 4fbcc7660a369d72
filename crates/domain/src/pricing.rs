//! Order line pricing: catalog unit prices times quantities, summed with checked arithmetic in
//! one currency. The client never sends a price; the order component passes the prices the stock
//! component snapshotted when it reserved the items.

use std::fmt;

use crate::money::{Currency, Money, MoneyError};
use crate::new_order::{NewOrder, Quantity};
use crate::sku::Sku;

/// One priced line of an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricedLine {
    pub sku: Sku,
    pub quantity: Quantity,
    pub unit_price: Money,
    pub line_total: Money,
}

/// The priced order: lines in request order, and the totals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricedOrder {
    pub lines: Vec<PricedLine>,
    pub currency: Currency,
    pub subtotal: Money,
    pub discount: Money,
    pub total: Money,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PricingError {
    /// The catalog has no price for this SKU (index into the request items).
    MissingPrice { index: usize, sku: Sku },
    /// Items are priced in more than one currency; an order has exactly one.
    MixedCurrencies { skus: Vec<Sku> },
    /// A line or the subtotal exceeds [`Money::MAX_MINOR`] (2^53 - 1): no JSON client could
    /// read it exactly, so the order is refused rather than shown with a rounded total.
    Overflow,
    /// A discount in another currency than the order's, or larger than its subtotal.
    InvalidDiscount,
}

impl fmt::Display for PricingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PricingError::MissingPrice { sku, .. } => write!(f, "no catalog price for sku {sku}"),
            PricingError::MixedCurrencies { skus } => {
                let names: Vec<&str> = skus.iter().map(Sku::as_str).collect();
                write!(
                    f,
                    "items are priced in different currencies ({}); place one order per currency",
                    names.join(", ")
                )
            }
            PricingError::Overflow => write!(
                f,
                "order total would exceed {} minor units (2^53 - 1); split the order",
                Money::MAX_MINOR
            ),
            PricingError::InvalidDiscount => {
                write!(
                    f,
                    "the discount is not in the order's currency or exceeds its subtotal"
                )
            }
        }
    }
}

impl std::error::Error for PricingError {}

/// Prices `order` with `catalog` (SKU -> unit price). The first item's currency is the order's;
/// any item in another currency is named in [`PricingError::MixedCurrencies`]. The discount is
/// zero: a coupon's is priced in afterwards with [`with_discount`].
pub fn price(order: &NewOrder, catalog: &[(Sku, Money)]) -> Result<PricedOrder, PricingError> {
    let mut lines = Vec::with_capacity(order.items.len());
    for (index, item) in order.items.iter().enumerate() {
        let unit_price = catalog
            .iter()
            .find(|(s, _)| s == &item.sku)
            .map(|(_, p)| *p)
            .ok_or_else(|| PricingError::MissingPrice {
                index,
                sku: item.sku.clone(),
            })?;
        let line_total = unit_price
            .checked_mul(item.quantity.get())
            .map_err(|_| PricingError::Overflow)?;
        lines.push(PricedLine {
            sku: item.sku.clone(),
            quantity: item.quantity,
            unit_price,
            line_total,
        });
    }
    let currency = match lines.first() {
        Some(l) => l.unit_price.currency(),
        None => return Err(PricingError::Overflow),
    };
    let odd: Vec<Sku> = lines
        .iter()
        .filter(|l| l.unit_price.currency() != currency)
        .map(|l| l.sku.clone())
        .collect();
    if !odd.is_empty() {
        let mut skus = vec![lines[0].sku.clone()];
        skus.extend(odd);
        return Err(PricingError::MixedCurrencies { skus });
    }
    let mut subtotal = Money::zero(currency);
    for l in &lines {
        subtotal = subtotal.checked_add(l.line_total).map_err(|e| match e {
            MoneyError::Overflow => PricingError::Overflow,
            _ => PricingError::Overflow,
        })?;
    }
    let discount = Money::zero(currency);
    let total = subtotal
        .saturating_sub(discount)
        .map_err(|_| PricingError::Overflow)?;
    Ok(PricedOrder {
        lines,
        currency,
        subtotal,
        discount,
        total,
    })
}

/// `priced` with `discount` (what the coupon context held for this order): `total = subtotal -
/// discount`, exact. A discount in another currency or above the subtotal is refused, never
/// clamped: the order must charge what the coupon context decided or nothing.
pub fn with_discount(priced: PricedOrder, discount: Money) -> Result<PricedOrder, PricingError> {
    if discount.currency() != priced.currency || discount.minor() > priced.subtotal.minor() {
        return Err(PricingError::InvalidDiscount);
    }
    let total = priced
        .subtotal
        .saturating_sub(discount)
        .map_err(|_| PricingError::InvalidDiscount)?;
    Ok(PricedOrder {
        discount,
        total,
        ..priced
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::new_order::RawItem;

    fn money(minor: i64, cur: &str) -> Money {
        Money::new(minor, Currency::parse(cur).unwrap()).unwrap()
    }

    fn order(items: &[(&str, i64)]) -> NewOrder {
        let raw: Vec<RawItem> = items
            .iter()
            .map(|(sku, quantity)| RawItem {
                sku,
                quantity: *quantity,
            })
            .collect();
        NewOrder::parse("u", &raw, None).unwrap()
    }

    fn sku(s: &str) -> Sku {
        Sku::parse(s).unwrap()
    }

    #[test]
    fn prices_lines_and_totals() {
        let p = price(
            &order(&[("A", 3), ("B", 1)]),
            &[(sku("B"), money(250, "EUR")), (sku("A"), money(199, "EUR"))],
        )
        .unwrap();
        assert_eq!(p.lines[0].line_total.minor(), 597);
        assert_eq!(p.lines[1].unit_price.minor(), 250);
        assert_eq!(p.subtotal.minor(), 847);
        assert_eq!(p.discount.minor(), 0);
        assert_eq!(p.total.minor(), 847);
        assert_eq!(p.currency.as_str(), "EUR");
    }

    #[test]
    fn a_discount_is_priced_in_exactly_and_never_past_the_subtotal() {
        let p = price(&order(&[("A", 3)]), &[(sku("A"), money(199, "EUR"))]).unwrap();
        let d = with_discount(p.clone(), money(97, "EUR")).unwrap();
        assert_eq!(
            (d.subtotal.minor(), d.discount.minor(), d.total.minor()),
            (597, 97, 500)
        );
        assert_eq!(d.lines, p.lines);
        let all = with_discount(p.clone(), money(597, "EUR")).unwrap();
        assert_eq!(all.total.minor(), 0);
        assert_eq!(
            with_discount(p.clone(), money(598, "EUR")),
            Err(PricingError::InvalidDiscount)
        );
        assert_eq!(
            with_discount(p, money(1, "USD")),
            Err(PricingError::InvalidDiscount)
        );
    }

    #[test]
    fn refuses_mixed_currencies_naming_the_skus() {
        let err = price(
            &order(&[("A", 1), ("B", 1), ("C", 1)]),
            &[
                (sku("A"), money(1, "EUR")),
                (sku("B"), money(1, "EUR")),
                (sku("C"), money(1, "USD")),
            ],
        )
        .unwrap_err();
        assert_eq!(
            err,
            PricingError::MixedCurrencies {
                skus: vec![sku("A"), sku("C")]
            }
        );
    }

    proptest::proptest! {
        /// Lines are price times quantity, the subtotal is their sum, nothing panics: an amount
        /// that does not fit is an error.
        #[test]
        fn totals_are_sums_of_lines(
            lines in proptest::collection::vec(
                (1i64..=1_000_000, proptest::prop_oneof![0i64..=10_000_000, 0i64..=Money::MAX_MINOR]),
                1..8,
            )
        ) {
            let skus: Vec<String> = (0..lines.len()).map(|i| format!("S{i}")).collect();
            let raw: Vec<RawItem> = skus
                .iter()
                .zip(&lines)
                .map(|(sku, (q, _))| RawItem { sku, quantity: *q })
                .collect();
            let order = NewOrder::parse("u", &raw, None).unwrap();
            let catalog: Vec<(Sku, Money)> = skus
                .iter()
                .zip(&lines)
                .map(|(s, (_, p))| (sku(s), money(*p, "EUR")))
                .collect();
            // Exact arithmetic, then the cap every amount in a response must respect.
            let exact: Option<i64> = lines
                .iter()
                .try_fold(0i128, |acc, (q, p)| {
                    let line = i128::from(*p) * i128::from(*q);
                    (line <= i128::from(Money::MAX_MINOR)).then_some(acc + line)
                })
                .filter(|t| *t <= i128::from(Money::MAX_MINOR))
                .map(|t| t as i64);
            match price(&order, &catalog) {
                Ok(p) => {
                    proptest::prop_assert_eq!(Some(p.subtotal.minor()), exact);
                    proptest::prop_assert_eq!(p.total.minor(), p.subtotal.minor());
                    for (line, (q, unit)) in p.lines.iter().zip(&lines) {
                        proptest::prop_assert_eq!(line.line_total.minor(), unit * q);
                    }
                }
                Err(e) => {
                    proptest::prop_assert_eq!(e, PricingError::Overflow);
                    proptest::prop_assert_eq!(exact, None);
                }
            }
        }
    }

    #[test]
    fn missing_price_and_overflow() {
        let err = price(
            &order(&[("A", 1), ("B", 1)]),
            &[(sku("A"), money(1, "EUR"))],
        );
        assert_eq!(
            err,
            Err(PricingError::MissingPrice {
                index: 1,
                sku: sku("B")
            })
        );
        let err = price(
            &order(&[("A", 10_000)]),
            &[(sku("A"), money(Money::MAX_MINOR / 2, "EUR"))],
        );
        assert_eq!(err, Err(PricingError::Overflow));
    }

    /// The bound is 2^53 - 1, not i64::MAX: a subtotal of exactly 2^53 - 1 is fine, one unit more
    /// (far below i64::MAX) is refused, per line and across lines.
    #[test]
    fn totals_stop_at_two_to_the_53_minus_one() {
        let max = Money::MAX_MINOR;
        let p = price(&order(&[("A", 1)]), &[(sku("A"), money(max, "EUR"))]).unwrap();
        assert_eq!(p.total.minor(), 9_007_199_254_740_991);
        // 2^53 - 1 = 3 * third + 1: the second line's 1 reaches the bound exactly, 2 passes it.
        let third = max / 3;
        assert_eq!(third * 3 + 1, max);
        let lines = |b: i64| {
            price(
                &order(&[("A", 3), ("B", 1)]),
                &[(sku("A"), money(third, "EUR")), (sku("B"), money(b, "EUR"))],
            )
        };
        assert_eq!(lines(1).unwrap().total.minor(), max);
        assert_eq!(lines(2), Err(PricingError::Overflow));
        let err = price(
            &order(&[("A", 2)]),
            &[(sku("A"), money(max / 2 + 1, "EUR"))],
        );
        assert_eq!(err, Err(PricingError::Overflow));
    }
}

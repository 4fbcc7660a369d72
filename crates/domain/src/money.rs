//! Money as integer minor units plus an ISO 4217 currency. Never floats, never client totals:
//! every amount the shop charges is computed here from catalog prices with checked arithmetic.

use std::fmt;

/// An ISO 4217 alphabetic code: exactly three upper-case ASCII letters (e.g. `EUR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoneyError {
    BadCurrency(String),
    Negative,
    CurrencyMismatch(Currency, Currency),
    Overflow,
}

impl fmt::Display for MoneyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MoneyError::BadCurrency(s) => {
                write!(
                    f,
                    "currency must be an ISO 4217 code of three upper-case letters, got {s:?}"
                )
            }
            MoneyError::Negative => write!(f, "amount must not be negative"),
            MoneyError::CurrencyMismatch(a, b) => write!(f, "cannot mix currencies {a} and {b}"),
            MoneyError::Overflow => write!(
                f,
                "amount must be at most {} minor units (2^53 - 1)",
                Money::MAX_MINOR
            ),
        }
    }
}

impl std::error::Error for MoneyError {}

impl Currency {
    pub fn parse(s: &str) -> Result<Self, MoneyError> {
        match s.as_bytes() {
            [a, b, c] if [a, b, c].iter().all(|x| x.is_ascii_uppercase()) => {
                Ok(Currency([*a, *b, *c]))
            }
            _ => Err(MoneyError::BadCurrency(s.to_owned())),
        }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII upper-case letters are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

crate::deserialize_by_parse!(Currency);

/// On the wire (messages between contexts) an amount is two fields, `amount` (minor units) and
/// `currency`; reading one checks what [`Money::new`] checks.
#[derive(serde::Serialize, serde::Deserialize)]
struct MoneyFields {
    amount: i64,
    currency: Currency,
}

impl serde::Serialize for Money {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let fields = MoneyFields {
            amount: self.minor,
            currency: self.currency,
        };
        fields.serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Money {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let f = MoneyFields::deserialize(d)?;
        Money::new(f.amount, f.currency).map_err(serde::de::Error::custom)
    }
}

/// A non-negative amount in minor units (cents) of one currency, at most [`Money::MAX_MINOR`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    minor: i64,
    currency: Currency,
}

impl Money {
    /// 2^53 - 1: the largest integer a JSON client (JavaScript's `Number`, any double-based
    /// parser) and a Lua script read exactly. Every amount the shop stores, computes or answers
    /// stays at or below it, so no client ever sees a rounded price or total.
    pub const MAX_MINOR: i64 = (1 << 53) - 1;

    pub fn new(minor: i64, currency: Currency) -> Result<Self, MoneyError> {
        if minor < 0 {
            return Err(MoneyError::Negative);
        }
        Self::bounded(minor, currency)
    }

    fn bounded(minor: i64, currency: Currency) -> Result<Self, MoneyError> {
        if minor > Self::MAX_MINOR {
            return Err(MoneyError::Overflow);
        }
        Ok(Money { minor, currency })
    }

    pub fn zero(currency: Currency) -> Self {
        Money { minor: 0, currency }
    }

    pub fn minor(&self) -> i64 {
        self.minor
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch(self.currency, other.currency));
        }
        let minor = self
            .minor
            .checked_add(other.minor)
            .ok_or(MoneyError::Overflow)?;
        Self::bounded(minor, self.currency)
    }

    /// `self - other`, floored at zero (a discount never makes a total negative).
    pub fn saturating_sub(self, other: Money) -> Result<Money, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch(self.currency, other.currency));
        }
        Ok(Money {
            minor: (self.minor - other.minor).max(0),
            ..self
        })
    }

    pub fn checked_mul(self, factor: u32) -> Result<Money, MoneyError> {
        let minor = self
            .minor
            .checked_mul(i64::from(factor))
            .ok_or(MoneyError::Overflow)?;
        Self::bounded(minor, self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eur(minor: i64) -> Money {
        Money::new(minor, Currency::parse("EUR").unwrap()).unwrap()
    }

    #[test]
    fn currency_must_be_three_upper_case_letters() {
        assert!(Currency::parse("EUR").is_ok());
        for bad in ["eur", "EU", "EURO", "", "E1R", "ÉUR"] {
            assert!(Currency::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn arithmetic_is_checked_and_currency_safe() {
        assert_eq!(eur(150).checked_add(eur(250)).unwrap().minor(), 400);
        assert_eq!(eur(150).checked_mul(3).unwrap().minor(), 450);
        assert_eq!(
            eur(Money::MAX_MINOR).checked_add(eur(1)),
            Err(MoneyError::Overflow)
        );
        assert_eq!(
            eur(Money::MAX_MINOR).checked_mul(2),
            Err(MoneyError::Overflow)
        );
        assert_eq!(eur(100).saturating_sub(eur(300)).unwrap().minor(), 0);
        let usd = Money::new(1, Currency::parse("USD").unwrap()).unwrap();
        assert!(matches!(
            eur(1).checked_add(usd),
            Err(MoneyError::CurrencyMismatch(..))
        ));
        assert_eq!(
            Money::new(-1, Currency::parse("EUR").unwrap()),
            Err(MoneyError::Negative)
        );
    }

    #[test]
    fn amounts_stop_at_two_to_the_53_minus_one() {
        let cur = Currency::parse("EUR").unwrap();
        assert_eq!(Money::MAX_MINOR, 9_007_199_254_740_991);
        assert_eq!(
            Money::new(Money::MAX_MINOR, cur).unwrap().minor(),
            Money::MAX_MINOR
        );
        assert_eq!(
            Money::new(Money::MAX_MINOR + 1, cur),
            Err(MoneyError::Overflow)
        );
        assert_eq!(Money::new(i64::MAX, cur), Err(MoneyError::Overflow));
        assert_eq!(
            eur(Money::MAX_MINOR - 1)
                .checked_add(eur(1))
                .unwrap()
                .minor(),
            Money::MAX_MINOR
        );
        // Exactly representable as a double: the reason for the bound.
        assert_eq!(Money::MAX_MINOR as f64 as i64, Money::MAX_MINOR);
        assert_ne!((Money::MAX_MINOR + 2) as f64 as i64, Money::MAX_MINOR + 2);
    }

    proptest::proptest! {
        /// Sums and products either are exact and within the bound, or are refused.
        #[test]
        fn arithmetic_never_leaves_the_bound(
            a in 0i64..=Money::MAX_MINOR,
            b in 0i64..=Money::MAX_MINOR,
            k in 0u32..=u32::MAX,
        ) {
            let sum = i128::from(a) + i128::from(b);
            match eur(a).checked_add(eur(b)) {
                Ok(m) => proptest::prop_assert_eq!(i128::from(m.minor()), sum),
                Err(e) => {
                    proptest::prop_assert_eq!(e, MoneyError::Overflow);
                    proptest::prop_assert!(sum > i128::from(Money::MAX_MINOR));
                }
            }
            let product = i128::from(a) * i128::from(k);
            match eur(a).checked_mul(k) {
                Ok(m) => proptest::prop_assert_eq!(i128::from(m.minor()), product),
                Err(e) => {
                    proptest::prop_assert_eq!(e, MoneyError::Overflow);
                    proptest::prop_assert!(product > i128::from(Money::MAX_MINOR));
                }
            }
        }
    }
}

//! What an admin may write about a product: a name, a catalog price and, when the product is
//! created, its initial stock. Later stock changes are adjustments
//! ([`crate::adjustment::Adjustment`]), which cannot clobber units held by reservations.

use crate::field::FieldError;
use crate::money::{Currency, Money};
use crate::stock::StockCount;

/// The fields of `PUT /api/products/{sku}` as the client sent them, before any rule ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawProduct {
    pub name: String,
    pub price: i64,
    pub currency: String,
    pub stock: Option<i64>,
}

/// A valid product write. `stock`, if given, is the initial number of units available for
/// reservations; the stock component refuses it for a product that already exists (an
/// overwrite would lose every move made since it was read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductInput {
    pub name: String,
    pub price: Money,
    pub stock: Option<StockCount>,
}

impl ProductInput {
    pub const MAX_NAME_CHARS: usize = 200;

    pub fn parse(raw: RawProduct) -> Result<Self, FieldError> {
        let name = raw.name.trim();
        if name.is_empty() {
            return Err(FieldError::new("name", "must not be blank"));
        }
        if name.chars().count() > Self::MAX_NAME_CHARS {
            return Err(FieldError::new(
                "name",
                format!("must be at most {} characters", Self::MAX_NAME_CHARS),
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(FieldError::new(
                "name",
                "must not contain control characters",
            ));
        }
        let currency = Currency::parse(&raw.currency)
            .map_err(|e| FieldError::new("currency", e.to_string()))?;
        // Money refuses prices above 2^53 - 1, so Lua and JSON clients read every price exactly.
        let price =
            Money::new(raw.price, currency).map_err(|e| FieldError::new("price", e.to_string()))?;
        let stock = raw
            .stock
            .map(StockCount::parse)
            .transpose()
            .map_err(|e| FieldError::new("stock", e.to_string()))?;
        Ok(ProductInput {
            name: name.to_owned(),
            price,
            stock,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw() -> RawProduct {
        RawProduct {
            name: "  Red T-shirt ".into(),
            price: 1999,
            currency: "EUR".into(),
            stock: Some(10),
        }
    }

    #[test]
    fn accepts_and_trims() {
        let p = ProductInput::parse(raw()).unwrap();
        assert_eq!(p.name, "Red T-shirt");
        assert_eq!(p.price.minor(), 1999);
        assert_eq!(p.price.currency().as_str(), "EUR");
        assert_eq!(p.stock.map(StockCount::get), Some(10));
        let p = ProductInput::parse(RawProduct {
            stock: None,
            ..raw()
        })
        .unwrap();
        assert_eq!(p.stock, None);
    }

    #[test]
    fn price_stops_at_two_to_the_53_minus_one() {
        let at = |price: i64| ProductInput::parse(RawProduct { price, ..raw() });
        assert_eq!(
            at(Money::MAX_MINOR).unwrap().price.minor(),
            9_007_199_254_740_991
        );
        assert_eq!(at(Money::MAX_MINOR + 1).unwrap_err().field, "price");
        assert_eq!(at(1 << 53).unwrap_err().field, "price");
    }

    #[test]
    fn names_the_offending_field() {
        let field = |r: RawProduct| ProductInput::parse(r).unwrap_err().field;
        assert_eq!(
            field(RawProduct {
                name: " ".into(),
                ..raw()
            }),
            "name"
        );
        assert_eq!(
            field(RawProduct {
                name: "x".repeat(201),
                ..raw()
            }),
            "name"
        );
        assert_eq!(
            field(RawProduct {
                name: "a\u{0}b".into(),
                ..raw()
            }),
            "name"
        );
        assert_eq!(field(RawProduct { price: -1, ..raw() }), "price");
        assert_eq!(
            field(RawProduct {
                price: i64::MAX,
                ..raw()
            }),
            "price"
        );
        assert_eq!(
            field(RawProduct {
                currency: "eur".into(),
                ..raw()
            }),
            "currency"
        );
        assert_eq!(
            field(RawProduct {
                stock: Some(-1),
                ..raw()
            }),
            "stock"
        );
        assert!(ProductInput::parse(RawProduct {
            stock: Some(0),
            price: 0,
            ..raw()
        })
        .is_ok());
    }
}

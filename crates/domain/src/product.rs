//! What an admin may write about a product: a name, a catalog price and the stock on sale.

use crate::field::FieldError;
use crate::money::{Currency, Money};
use crate::stock::StockCount;

/// The fields of `PUT /api/products/{sku}` as the client sent them, before any rule ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawProduct {
    pub name: String,
    pub price: i64,
    pub currency: String,
    pub stock: i64,
}

/// A valid product write. `stock` is the number of units available for new reservations (see
/// [`crate::stock::StockLevels::set_available`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductInput {
    pub name: String,
    pub price: Money,
    pub stock: StockCount,
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
        // Catalog prices stay within 2^53 so Lua and JSON number handling stay exact.
        if raw.price > (1i64 << 53) {
            return Err(FieldError::new("price", "is too large"));
        }
        let price =
            Money::new(raw.price, currency).map_err(|e| FieldError::new("price", e.to_string()))?;
        let stock =
            StockCount::parse(raw.stock).map_err(|e| FieldError::new("stock", e.to_string()))?;
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
            stock: 10,
        }
    }

    #[test]
    fn accepts_and_trims() {
        let p = ProductInput::parse(raw()).unwrap();
        assert_eq!(p.name, "Red T-shirt");
        assert_eq!(p.price.minor(), 1999);
        assert_eq!(p.price.currency().as_str(), "EUR");
        assert_eq!(p.stock.get(), 10);
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
        assert_eq!(field(RawProduct { stock: -1, ..raw() }), "stock");
        assert!(ProductInput::parse(RawProduct {
            stock: 0,
            price: 0,
            ..raw()
        })
        .is_ok());
    }
}

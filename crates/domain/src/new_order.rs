//! What a client may ask for when it places an order, parsed: once a [`NewOrder`] exists its user
//! id, SKUs, quantities and coupon code are well-formed and its SKUs are distinct. Prices are not
//! part of it on purpose: they come from the catalog (see `pricing`), never from the client.

use std::collections::HashSet;

pub use crate::field::FieldError;
use crate::sku::Sku;
pub use crate::stock::Quantity;

/// Who places the order: 1-128 characters of `A-Z a-z 0-9 - _ . @ :`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct UserId(String);

impl UserId {
    pub const MAX_LEN: usize = 128;

    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("user_id must not be empty".into());
        }
        if s.chars().count() > Self::MAX_LEN {
            return Err(format!(
                "user_id must be at most {} characters",
                Self::MAX_LEN
            ));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | ':')))
        {
            return Err(format!("user_id must not contain {c:?}"));
        }
        Ok(UserId(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

crate::deserialize_by_parse!(UserId);

/// A coupon code as the client typed it: 1-64 characters of `A-Z a-z 0-9 - _`. What it is worth
/// is the coupon's ([`crate::coupon::Coupon`]): order creation tries it and prices the discount
/// it held into the order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct CouponCode(String);

impl CouponCode {
    pub const MAX_LEN: usize = 64;

    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.chars().count() > Self::MAX_LEN {
            return Err(format!(
                "coupon_code must be 1-{} characters",
                Self::MAX_LEN
            ));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_')))
        {
            return Err(format!("coupon_code must not contain {c:?}"));
        }
        Ok(CouponCode(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

crate::deserialize_by_parse!(CouponCode);

/// One requested line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedItem {
    pub sku: Sku,
    pub quantity: Quantity,
}

/// A parsed order request: the items in the client's order, SKUs distinct.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    pub user_id: UserId,
    pub items: Vec<RequestedItem>,
    pub coupon_code: Option<CouponCode>,
}

/// An item as it arrived, before parsing (the JSON shape is checked by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawItem<'a> {
    pub sku: &'a str,
    pub quantity: i64,
}

impl NewOrder {
    /// At most this many lines per order.
    pub const MAX_ITEMS: usize = 100;

    /// Parses every field; the first problem found is reported with its field path.
    pub fn parse(
        user_id: &str,
        items: &[RawItem<'_>],
        coupon_code: Option<&str>,
    ) -> Result<NewOrder, FieldError> {
        let user_id = UserId::parse(user_id).map_err(|e| FieldError::new("user_id", e))?;
        if items.is_empty() {
            return Err(FieldError::new("items", "items must not be empty"));
        }
        if items.len() > Self::MAX_ITEMS {
            return Err(FieldError::new(
                "items",
                format!("at most {} items per order", Self::MAX_ITEMS),
            ));
        }
        let mut seen = HashSet::new();
        let mut parsed = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let sku = Sku::parse(item.sku)
                .map_err(|e| FieldError::new(format!("items[{i}].sku"), e.to_string()))?;
            let quantity = Quantity::parse(item.quantity)
                .map_err(|e| FieldError::new(format!("items[{i}].quantity"), e.to_string()))?;
            if !seen.insert(sku.clone()) {
                return Err(FieldError::new(
                    format!("items[{i}].sku"),
                    format!("duplicate sku {sku}: put the whole quantity on one line"),
                ));
            }
            parsed.push(RequestedItem { sku, quantity });
        }
        let coupon_code = coupon_code
            .map(CouponCode::parse)
            .transpose()
            .map_err(|e| FieldError::new("coupon_code", e))?;
        Ok(NewOrder {
            user_id,
            items: parsed,
            coupon_code,
        })
    }

    /// The position of `sku` in the request, to name `items[i]` in errors found later.
    pub fn index_of(&self, sku: &Sku) -> Option<usize> {
        self.items.iter().position(|i| &i.sku == sku)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(sku: &str, quantity: i64) -> RawItem<'_> {
        RawItem { sku, quantity }
    }

    #[test]
    fn parses_a_plain_order() {
        let o = NewOrder::parse("u-1", &[item("A", 2), item("B", 1)], Some("WELCOME10")).unwrap();
        assert_eq!(o.user_id.as_str(), "u-1");
        assert_eq!(o.items.len(), 2);
        assert_eq!(o.items[0].quantity.get(), 2);
        assert_eq!(o.coupon_code.unwrap().as_str(), "WELCOME10");
    }

    #[test]
    fn names_the_offending_field() {
        let field = |r: Result<NewOrder, FieldError>| r.unwrap_err().field;
        assert_eq!(field(NewOrder::parse("", &[item("A", 1)], None)), "user_id");
        assert_eq!(
            field(NewOrder::parse("u 1", &[item("A", 1)], None)),
            "user_id"
        );
        assert_eq!(field(NewOrder::parse("u", &[], None)), "items");
        assert_eq!(
            field(NewOrder::parse("u", &[item("A", 0)], None)),
            "items[0].quantity"
        );
        assert_eq!(
            field(NewOrder::parse("u", &[item("A", 1), item("B", -3)], None)),
            "items[1].quantity"
        );
        assert_eq!(
            field(NewOrder::parse("u", &[item("A", 1_000_001)], None)),
            "items[0].quantity"
        );
        assert_eq!(
            field(NewOrder::parse("u", &[item("a/b", 1)], None)),
            "items[0].sku"
        );
        assert_eq!(
            field(NewOrder::parse("u", &[item("A", 1), item("A", 2)], None)),
            "items[1].sku"
        );
        assert_eq!(
            field(NewOrder::parse("u", &[item("A", 1)], Some(""))),
            "coupon_code"
        );
        assert_eq!(
            field(NewOrder::parse("u", &[item("A", 1)], Some("X Y"))),
            "coupon_code"
        );
        let many: Vec<String> = (0..101).map(|i| format!("S{i}")).collect();
        let raw: Vec<RawItem> = many.iter().map(|s| item(s, 1)).collect();
        assert_eq!(field(NewOrder::parse("u", &raw, None)), "items");
    }
}

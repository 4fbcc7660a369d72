//! The order as clients see it: built from the domain's [`PlacedOrder`] at the HTTP edge only.

use serde::Serialize;
use shop_domain::placed_order::PlacedOrder;

use crate::ids::rfc3339;

#[derive(Debug, Clone, Serialize)]
pub struct LineView {
    pub sku: String,
    pub quantity: i64,
    pub unit_price: i64,
    pub line_total: i64,
}

/// `{order_id, user_id, status, items, subtotal, discount, total, currency, coupon_code,
/// created_at, expires_at, version}`; amounts in minor units of `currency`.
#[derive(Debug, Clone, Serialize)]
pub struct OrderView {
    pub order_id: String,
    pub user_id: String,
    pub status: String,
    pub items: Vec<LineView>,
    pub subtotal: i64,
    pub discount: i64,
    pub total: i64,
    pub currency: String,
    pub coupon_code: Option<String>,
    /// Why the shop is giving the payment back (e.g. `out-of-stock`), when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refund_reason: Option<String>,
    pub created_at: String,
    pub expires_at: String,
    pub version: i64,
}

impl From<&PlacedOrder> for OrderView {
    fn from(o: &PlacedOrder) -> Self {
        OrderView {
            order_id: o.order_id.clone(),
            user_id: o.user_id.as_str().to_owned(),
            status: o.status().as_str().to_owned(),
            items: o
                .lines
                .iter()
                .map(|l| LineView {
                    sku: l.sku.as_str().to_owned(),
                    quantity: i64::from(l.quantity.get()),
                    unit_price: l.unit_price.minor(),
                    line_total: l.line_total.minor(),
                })
                .collect(),
            subtotal: o.subtotal.minor(),
            discount: o.discount.minor(),
            total: o.total.minor(),
            currency: o.currency.as_str().to_owned(),
            coupon_code: o.coupon_code.as_ref().map(|c| c.as_str().to_owned()),
            refund_reason: o.refund_reason.map(|r| r.as_str().to_owned()),
            created_at: rfc3339(o.created_ms),
            expires_at: rfc3339(o.expires_ms),
            version: o.version(),
        }
    }
}

/// Order ids this component issues: `ord_` and 32 lowercase hex digits. Anything else cannot
/// exist, so it is a 404 without a query.
pub fn is_order_id(s: &str) -> bool {
    s.strip_prefix("ord_")
        .is_some_and(|h| h.len() == 32 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

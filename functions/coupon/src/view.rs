//! The JSON answers, built from the domain values at the edge only.

use serde::Serialize;
use shop_domain::coupon::{Coupon, Discount};
use shop_domain::timestamp::Timestamp;

use shop_domain::coupon::Redemption;

use crate::store::Usage;

/// A coupon with its current usage.
#[derive(Debug, Serialize)]
pub struct CouponView<'a> {
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    percent_off: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    amount_off: Option<i64>,
    currency: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    min_subtotal: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_redemptions: Option<u32>,
    per_customer: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    starts_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ends_at: Option<Timestamp>,
    /// Redemptions held for unpaid orders, and confirmed (paid).
    held: i64,
    confirmed: i64,
}

impl<'a> CouponView<'a> {
    pub fn new(c: &'a Coupon, usage: Usage) -> Self {
        let (percent_off, amount) = match c.discount {
            Discount::Percent(p) => (Some(p), None),
            Discount::Amount(m) => (None, Some(m)),
        };
        let at = |ms: Option<i64>| ms.and_then(|ms| Timestamp::from_millis(ms).ok());
        CouponView {
            code: c.code.as_str(),
            percent_off,
            amount_off: amount.map(|m| m.minor()),
            currency: c.currency.as_str(),
            min_subtotal: c.min_subtotal.map(|m| m.minor()),
            max_redemptions: c.max_redemptions,
            per_customer: c.per_customer,
            starts_at: at(c.starts_at_ms),
            ends_at: at(c.ends_at_ms),
            held: usage.held,
            confirmed: usage.confirmed,
        }
    }
}

/// One redemption: what was held and where it is now.
#[derive(Debug, Serialize)]
pub struct RedemptionView<'a> {
    code: &'a str,
    redemption_id: &'a str,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subtotal: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    discount: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    currency: Option<String>,
}

impl<'a> From<&'a Redemption> for RedemptionView<'a> {
    fn from(r: &'a Redemption) -> Self {
        let held = r.held.as_ref();
        RedemptionView {
            code: r.code.as_str(),
            redemption_id: r.id.as_str(),
            status: r.status.as_str(),
            user_id: held.map(|h| h.user.as_str()),
            subtotal: held.map(|h| h.subtotal.minor()),
            discount: held.map(|h| h.discount.minor()),
            currency: held.map(|h| h.subtotal.currency().as_str().to_owned()),
        }
    }
}

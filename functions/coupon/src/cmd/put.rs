//! `PUT /api/coupons/{code}` (admin): create or replace a coupon.
//!
//! `{currency, percent_off | amount_off, min_subtotal?, max_redemptions?, per_customer?,
//! starts_at?, ends_at?}` (a coupon is for orders in its currency); 201 when new, 200 when replaced. Replacing changes the rules for
//! tries from now on; redemptions already held keep the discount they were given (the order's
//! total was computed from it).

use shop_adapter::auth::require_admin;
use shop_adapter::body::{parse_object, Fields};
use shop_adapter::respond::{json, HandlerResult};
use shop_adapter::Problem;
use shop_domain::coupon::{Coupon, RawCoupon};
use shop_domain::new_order::CouponCode;
use shop_domain::timestamp::Timestamp;
use spin_sdk::http::Request;

use super::unavailable;
use crate::view::CouponView;
use crate::{db, store};

/// The most a coupon body may be: a few times the largest valid one (six numbers, a currency
/// and two timestamps: well under 1 KiB).
pub const BODY_LIMIT: usize = 4 * 1024;

pub fn handle(req: &Request, code: &str) -> HandlerResult {
    require_admin(req)?;
    let code = CouponCode::parse(code).map_err(|_| {
        Problem::unprocessable(
            "code",
            "the code must be 1-64 characters of A-Z a-z 0-9 - _",
        )
    })?;
    let coupon = parse(code, req.body())?;
    let conn = db::open()?;
    let now = shop_adapter::ids::now_ms();
    let created = store::put(&conn, &coupon, now).map_err(unavailable)?;
    let usage = store::usage(&conn, &coupon.code).map_err(unavailable)?;
    Ok(json(
        if created { 201 } else { 200 },
        &CouponView::new(&coupon, usage),
    ))
}

/// JSON -> domain coupon; every failure names the field.
fn parse(code: CouponCode, body: &[u8]) -> Result<Coupon, Problem> {
    let body = parse_object(body)?;
    let f = Fields::root(&body);
    let at = |key: &str| -> Result<Option<i64>, Problem> {
        f.opt_str(key)?
            .map(|s| {
                Timestamp::parse_rfc3339(s)
                    .map(Timestamp::millis)
                    .map_err(|e| Problem::unprocessable(key, e.to_string()))
            })
            .transpose()
    };
    let raw = RawCoupon {
        percent_off: f.opt_i64("percent_off")?,
        amount_off: f.opt_i64("amount_off")?,
        currency: f.str("currency")?.to_owned(),
        min_subtotal: f.opt_i64("min_subtotal")?,
        max_redemptions: f.opt_i64("max_redemptions")?,
        per_customer: f.opt_i64("per_customer")?,
        starts_at_ms: at("starts_at")?,
        ends_at_ms: at("ends_at")?,
    };
    Coupon::parse(code, raw).map_err(|e| Problem::unprocessable(&e.field, e.detail))
}

//! One route per file; each calls the store, never its tables.

pub mod drain;
pub mod get;
pub mod put;
pub mod redeem;
pub mod redemption;

use shop_adapter::Problem;
use shop_domain::coupon::RedemptionId;
use shop_domain::new_order::CouponCode;

/// A path's coupon code: one that cannot exist names no coupon (404).
pub fn code_in_path(code: &str) -> Result<CouponCode, Problem> {
    CouponCode::parse(code).map_err(|_| unknown_coupon(code))
}

/// A path's redemption id: one that cannot exist names no redemption (404).
pub fn redemption_in_path(id: &str) -> Result<RedemptionId, Problem> {
    RedemptionId::parse(id).map_err(|_| Problem::not_found(format!("no redemption with id {id:?}")))
}

pub fn unknown_coupon(code: &str) -> Problem {
    Problem::not_found(format!("no coupon with code {code:?}"))
}

/// A storage failure: 503, logged once here.
pub fn unavailable(err: anyhow::Error) -> Problem {
    crate::db::unavailable("coupon store", format!("{err:#}"))
}

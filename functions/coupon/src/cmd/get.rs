//! `GET /api/coupons/{code}` (admin): the coupon and how often it is held and used.

use shop_adapter::auth::require_admin;
use shop_adapter::respond::{json, HandlerResult};
use spin_sdk::http::Request;

use super::{code_in_path, unavailable, unknown_coupon};
use crate::db;
use crate::store;
use crate::view::CouponView;

pub fn handle(req: &Request, code: &str) -> HandlerResult {
    require_admin(req)?;
    let code = code_in_path(code)?;
    let conn = db::open()?;
    let coupon = store::load(&conn, &code)
        .map_err(unavailable)?
        .ok_or_else(|| unknown_coupon(code.as_str()))?;
    let usage = store::usage(&conn, &code).map_err(unavailable)?;
    Ok(json(200, &CouponView::new(&coupon, usage)))
}

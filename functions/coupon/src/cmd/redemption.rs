//! One redemption (internal): `GET /api/coupons/{code}/redemptions/{id}`, and the TCC confirm
//! (`.../confirm`: the order was paid) and cancel (`.../cancel`: it will not be). Both are
//! idempotent (200 again with the same state); a confirmed redemption is never cancelled and a
//! cancelled one never confirmed (409 `redemption-state`); a cancel of a redemption never tried
//! is recorded (200 CANCELLED), so its try is refused when it arrives late.

use shop_adapter::auth::require_internal;
use shop_adapter::respond::{json, HandlerResult};
use shop_adapter::Problem;
use shop_domain::coupon::{RedemptionAction, RedemptionId, RedemptionRefused};
use spin_sdk::http::Request;

use super::{code_in_path, redemption_in_path, unavailable, unknown_coupon};
use crate::db;
use crate::store::{self, Settled};
use crate::view::RedemptionView;

pub fn get(req: &Request, code: &str, id: &str) -> HandlerResult {
    require_internal(req)?;
    let (code, id) = (code_in_path(code)?, redemption_in_path(id)?);
    let conn = db::open()?;
    let found = store::redemption(&conn, &code, &id).map_err(unavailable)?;
    let r = found.ok_or_else(|| not_found(&id))?;
    Ok(json(200, &RedemptionView::from(&r)))
}

/// Confirm or cancel.
pub fn settle(req: &Request, code: &str, id: &str, action: RedemptionAction) -> HandlerResult {
    require_internal(req)?;
    let (code, id) = (code_in_path(code)?, redemption_in_path(id)?);
    let conn = db::open()?;
    let now = shop_adapter::ids::now_ms();
    match store::settle(&conn, &code, &id, action, now).map_err(unavailable)? {
        Settled::Changed(r) | Settled::Unchanged(r) => Ok(json(200, &RedemptionView::from(&r))),
        Settled::Refused(RedemptionRefused { from: None, .. }) => Err(not_found(&id)),
        Settled::Refused(r) => Err(refused(r, &id)),
        Settled::UnknownCoupon => Err(unknown_coupon(code.as_str())),
    }
}

/// A step the redemption's state refuses: 409 naming the state.
pub fn refused(r: RedemptionRefused, id: &RedemptionId) -> Problem {
    let status = r.from.map_or("UNKNOWN", |s| s.as_str());
    Problem::conflict("redemption-state", r.to_string())
        .with("redemption_id", id.as_str())
        .with("redemption_status", status)
}

fn not_found(id: &RedemptionId) -> Problem {
    Problem::not_found(format!("no redemption with id {:?}", id.as_str()))
}

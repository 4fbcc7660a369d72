//! `POST /api/coupons/{code}/redemptions` (internal): TCC try. Holds one redemption of the
//! coupon for an order, or says why not.
//!
//! `{redemption_id, user_id, subtotal, currency}` -> 201 HELD with the discount; the same try
//! again -> 200 with what the first decided (`idempotent-replayed: true`); the same id for another
//! customer or subtotal -> 422 `redemption-id-reused`; a try that arrives after its cancel -> 409
//! `redemption-state` (nothing is held that nobody would give back); a coupon that cannot be used
//! for this order (not valid yet, expired, other currency, below its minimum, no redemptions
//! left, this customer's limit reached) -> 409 with the reason as its type; 404 unknown coupon.

use shop_adapter::auth::require_internal;
use shop_adapter::body::{parse_object, Fields};
use shop_adapter::respond::{json, HandlerResult};
use shop_adapter::Problem;
use shop_domain::coupon::{CouponRefused, RedemptionId};
use shop_domain::new_order::UserId;
use shop_domain::{Currency, Money};
use spin_sdk::http::Request;

use super::{code_in_path, unavailable, unknown_coupon};
use crate::store::{self, Tried};
use crate::view::RedemptionView;
use crate::{cmd::redemption::refused, db};

/// What a try asks for.
struct TryRequest {
    id: RedemptionId,
    user: UserId,
    subtotal: Money,
}

/// The most a try body may be: a few times the largest valid one (an id, a 128-character user
/// id, an amount and a currency: under 1 KiB).
pub const BODY_LIMIT: usize = 4 * 1024;

pub fn handle(req: &Request, code: &str) -> HandlerResult {
    require_internal(req)?;
    let code = code_in_path(code)?;
    let ask = parse(req.body())?;
    let conn = db::open()?;
    let now = shop_adapter::ids::now_ms();
    let tried = store::try_hold(&conn, &code, &ask.id, &ask.user, ask.subtotal, now)
        .map_err(unavailable)?;
    match tried {
        Tried::Held(r) => Ok(json(201, &RedemptionView::from(&r))),
        Tried::Replay(r) => {
            let mut resp = json(200, &RedemptionView::from(&r));
            resp.set_header("idempotent-replayed", "true");
            Ok(resp)
        }
        Tried::Reused => Err(Problem::new(
            422,
            "redemption-id-reused",
            "Redemption id reused",
            format!(
                "redemption {} was tried for another customer or subtotal; use a new redemption_id",
                ask.id.as_str()
            ),
        )
        .with_field("redemption_id")),
        Tried::Refused(why) => Err(coupon_refused(why)),
        Tried::Late(r) => Err(refused(r, &ask.id)),
        Tried::UnknownCoupon => Err(unknown_coupon(code.as_str())),
    }
}

/// Why the coupon cannot be used for this order: 409, the reason as its type.
fn coupon_refused(why: CouponRefused) -> Problem {
    let p = Problem::conflict(why.slug(), why.to_string());
    match why {
        CouponRefused::BelowMinimum(min) => p.with("min_subtotal", min.minor()),
        _ => p,
    }
}

/// JSON -> the try; every failure names the field.
fn parse(body: &[u8]) -> Result<TryRequest, Problem> {
    let body = parse_object(body)?;
    let f = Fields::root(&body);
    let id = RedemptionId::parse(f.str("redemption_id")?)
        .map_err(|e| Problem::unprocessable("redemption_id", e))?;
    let user =
        UserId::parse(f.str("user_id")?).map_err(|e| Problem::unprocessable("user_id", e))?;
    let currency = Currency::parse(f.str("currency")?)
        .map_err(|e| Problem::unprocessable("currency", e.to_string()))?;
    let subtotal = Money::new(f.i64("subtotal")?, currency)
        .map_err(|e| Problem::unprocessable("subtotal", e.to_string()))?;
    Ok(TryRequest { id, user, subtotal })
}

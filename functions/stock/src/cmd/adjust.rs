//! `POST /api/products/{sku}/stock-adjustments` (admin): change a product's stock by a signed
//! delta (a delivery +, breakage or a count correction -).
//!
//! The only way to change the stock of an existing product. A delta never overwrites anything, so
//! it cannot undo a reservation made while the admin was looking; adjust.lua checks that
//! `available` stays >= 0, moves it and records the adjustment in one atomic step, and touches
//! neither `reserved` nor `sold`. The caller names the adjustment (`adjustment_id`): a retry with
//! the same body answers the stored result (200, `idempotent-replayed: true`) without moving
//! units twice; the same id with another body is 422. No lock or fencing token is needed: a
//! delta commutes with every other move, and the script is atomic.

use serde::Serialize;
use shop_adapter::auth::require_bearer;
use shop_adapter::body::{parse_object, Fields};
use shop_adapter::respond::{json, HandlerResult};
use shop_adapter::Problem;
use shop_domain::adjustment::{Adjustment, RawAdjustment};
use shop_domain::stock::StockCount;
use shop_domain::timestamp::Timestamp;
use shop_domain::Sku;
use spin_sdk::http::Request;

use crate::redis::{bad_reply, keys, Store, ADJUST};

/// How long an applied adjustment's record (its idempotency) is kept: as long as a settled
/// reservation's.
const RETENTION_SECONDS: u64 = 30 * 24 * 3600;

/// The answer: the adjustment and the product's levels right after it.
#[derive(Debug, Serialize)]
struct AdjustmentView<'a> {
    adjustment_id: &'a str,
    sku: &'a str,
    delta: i64,
    reason: &'a str,
    applied_at: Timestamp,
    available: u64,
    reserved: u64,
    sold: u64,
}

/// The most an adjustment body may be: a few times the largest valid one (an id, a delta and a
/// 200-character reason, even written as `\u` escapes: under 3 KiB).
pub const BODY_LIMIT: usize = 8 * 1024;

pub fn handle(req: &Request, sku: &str) -> HandlerResult {
    let admin = shop_adapter::vars::get("admin_token")
        .map_err(|e| Problem::internal("read variable admin_token", e))?;
    require_bearer(req, &admin)?;
    let sku = Sku::parse(sku).map_err(|e| Problem::unprocessable("sku", e.to_string()))?;
    let adj = parse(req.body())?;
    let delta = adj.delta.get().to_string();
    let retention = RETENTION_SECONDS.to_string();
    let max = StockCount::MAX.to_string();
    let reply = Store::open()?.run(
        &ADJUST,
        &[
            &keys::product(sku.as_str()),
            &keys::adjustment(adj.id.as_str()),
        ],
        &[sku.as_str(), &delta, &adj.reason, &retention, &max],
    )?;
    answer(&adj, &sku, &reply)
}

/// adjust.lua's reply -> the HTTP answer.
fn answer(adj: &Adjustment, sku: &Sku, reply: &[String]) -> HandlerResult {
    let (outcome, rest) = reply
        .split_first()
        .ok_or_else(|| bad_reply(&ADJUST, reply))?;
    let delta = adj.delta.get();
    let max = StockCount::MAX;
    let on_hand = || {
        rest.first()
            .and_then(|a| a.parse::<u64>().ok())
            .unwrap_or(0)
    };
    match outcome.as_str() {
        "APPLIED" => Ok(json(201, &view(adj, sku, rest)?)),
        "EXISTING" => {
            let mut resp = json(200, &view(adj, sku, rest)?);
            resp.set_header("idempotent-replayed", "true");
            Ok(resp)
        }
        "MISMATCH" => Err(Problem::new(
            422,
            "adjustment-id-reused",
            "Adjustment id reused",
            format!("adjustment {} was applied with another sku, delta or reason; use a new adjustment_id", adj.id),
        )
        .with_field("adjustment_id")),
        "UNKNOWN" => Err(Problem::not_found(format!("no product with sku {:?}", sku.as_str()))
            .with("skus", [sku.as_str()])),
        "SHORT" => Err(Problem::conflict(
            "insufficient-stock",
            format!("{sku} has {} units available; a delta of {delta} would make it negative (reserved units cannot be adjusted away)", on_hand()),
        )
        .with_field("delta")
        .with("skus", [sku.as_str()])
        .with("available", on_hand())),
        "OVER" => Err(Problem::conflict(
            "stock-limit",
            format!("{sku} has {} units available; a delta of {delta} would exceed {max}", on_hand()),
        )
        .with_field("delta")
        .with("available", on_hand())),
        _ => Err(bad_reply(&ADJUST, reply)),
    }
}

/// JSON -> domain request; every failure names the field.
fn parse(body: &[u8]) -> Result<Adjustment, Problem> {
    let body = parse_object(body)?;
    let f = Fields::root(&body);
    Adjustment::parse(RawAdjustment {
        adjustment_id: f.str("adjustment_id")?.to_owned(),
        delta: f.i64("delta")?,
        reason: f.str("reason")?.to_owned(),
    })
    .map_err(|e| Problem::unprocessable(&e.field, e.detail))
}

/// From `[applied_at_ms, available, reserved, sold]` as adjust.lua returns them.
fn view<'a>(
    adj: &'a Adjustment,
    sku: &'a Sku,
    f: &[String],
) -> Result<AdjustmentView<'a>, Problem> {
    let bad = || bad_reply(&ADJUST, f);
    let [applied_at, available, reserved, sold] = f else {
        return Err(bad());
    };
    Ok(AdjustmentView {
        adjustment_id: adj.id.as_str(),
        sku: sku.as_str(),
        delta: adj.delta.get(),
        reason: &adj.reason,
        applied_at: applied_at
            .parse::<i64>()
            .ok()
            .and_then(|ms| Timestamp::from_millis(ms).ok())
            .ok_or_else(bad)?,
        available: available.parse().map_err(|_| bad())?,
        reserved: reserved.parse().map_err(|_| bad())?,
        sold: sold.parse().map_err(|_| bad())?,
    })
}

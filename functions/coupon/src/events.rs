//! The coupon context's receiver: the `coupon-events` component (this wasm on Spin's Redis
//! trigger, woken by `doorbell:orders`; no service chaining) drains `events:orders` as its own
//! consumer group `coupon` and settles the redemptions orders hold (the redemption id is the
//! order id), each message in one transaction with its inbox row, so a redelivered message
//! changes nothing:
//!
//! - `OrderCreated` with a coupon: the order exists; the sweep leaves its hold alone.
//! - `OrderPaid` with a coupon: confirm (TCC). A hold already cancelled (the sweep cancelled an
//!   order it thought never came) cannot be confirmed: logged as an ALERT, acknowledged.
//! - `OrderCancelled` / `OrderExpired` with a coupon: cancel, its capacity back. Before its try
//!   (reordered), the TCC table's empty cancel: a try arriving later is refused. The same for
//!   an `OrderRefunded` from PENDING_PAYMENT (its mismatched payment given back: never paid).
//! - Anything else, or an order without a coupon: only the inbox records it.
//!
//! On the compensator's periodic ring (the `sweep` payload) it also cancels holds whose order
//! never came: HELD, no message of its order seen, tried more than `coupon_hold_timeout_seconds`
//! ago (a crash or a failed order write between the try and the order). Each cancel checks and
//! cancels in one transaction, so sweeps overlapping each other, or an `OrderCreated` applied
//! meanwhile, never cancel twice or cancel a hold whose order came. The inbox's old rows are
//! purged after `inbox_retention_hours`.

use serde::Serialize;
use shop_adapter::receiver::{self, DrainOptions, DrainReport, Envelope};
use shop_adapter::sqlite::Tx;
use shop_domain::coupon::{RedemptionAction, RedemptionId};
use shop_domain::messages::OrderEvent;
use spin_sdk::sqlite::Connection;

use crate::store::{self, Settled};

/// The topic and the consumer group this receiver drains.
const TOPIC: &str = "orders";
const GROUP: &str = "coupon";
/// Holds cancelled per sweep at most (the next ring takes the rest).
const SWEEP_LIMIT: i64 = 500;

/// What one run of the receiver did.
#[derive(Debug, Default, Serialize)]
pub struct Received {
    #[serde(flatten)]
    pub drained: DrainReport,
    /// Holds whose order never came, cancelled by this run's sweep.
    pub orphans_cancelled: u64,
    pub inbox_purged: i64,
}

/// Spin's Redis trigger: a ring of `doorbell:orders`.
#[spin_sdk::redis_component]
fn on_doorbell(payload: Vec<u8>) -> anyhow::Result<()> {
    let r = receive(receiver::wants_sweep(&payload))?;
    eprintln!(
        "coupon-events: read {} applied {} failed {} dead-lettered {} orphans cancelled {} inbox purged {}",
        r.drained.read,
        r.drained.applied,
        r.drained.failed,
        r.drained.dead_lettered,
        r.orphans_cancelled,
        r.inbox_purged
    );
    Ok(())
}

/// Drains the order messages, then, with `sweep`, cancels the holds whose order never came.
/// The Redis trigger runs it on every ring; `POST /api/coupons/events/drain` runs it where
/// there is no Redis trigger. The sweep runs even when the drain failed (Redis down).
pub fn receive(sweep: bool) -> anyhow::Result<Received> {
    let conn = crate::db::open().map_err(|p| anyhow::anyhow!("{}", p.detail))?;
    let url = shop_adapter::vars::get("redis_url")?;
    let options = DrainOptions::default();
    let drained = receiver::drain(&url, TOPIC, GROUP, &options, |env: &Envelope| {
        apply(&conn, env)
    });
    let mut received = Received::default();
    if sweep {
        let now = shop_adapter::ids::now_ms();
        received.orphans_cancelled = cancel_orphans(&conn, now)?;
        let keep_ms = whole_var("inbox_retention_hours", 720)? * 3_600_000;
        received.inbox_purged = shop_adapter::inbox::purge(&conn, now - keep_ms)?;
    }
    received.drained = drained?;
    Ok(received)
}

/// One order message, with its inbox row, in one transaction.
fn apply(conn: &Connection, env: &Envelope) -> anyhow::Result<()> {
    // Unreadable (unknown kind, malformed payload): dead-lettered at once with the reason.
    let event: OrderEvent = env.decode()?;
    let now = shop_adapter::ids::now_ms();
    let tx = Tx::begin(conn)?;
    if shop_adapter::inbox::record(conn, &env.message_id, &env.kind, now)? {
        settle(conn, &event, now)?;
    }
    tx.commit()
}

/// What an order message means for its coupon's redemption, inside the caller's transaction.
fn settle(conn: &Connection, event: &OrderEvent, now: i64) -> anyhow::Result<()> {
    let (order_id, code, action) = match event {
        OrderEvent::OrderCreated(o) => (&o.order_id, o.coupon_code.as_ref(), None),
        OrderEvent::OrderPaid(o) => (
            &o.order.order_id,
            o.order.coupon_code.as_ref(),
            Some(RedemptionAction::Confirm),
        ),
        OrderEvent::OrderCancelled(o) => (
            &o.order.order_id,
            o.order.coupon_code.as_ref(),
            Some(RedemptionAction::Cancel),
        ),
        OrderEvent::OrderExpired(o) => (
            &o.order.order_id,
            o.order.coupon_code.as_ref(),
            Some(RedemptionAction::Cancel),
        ),
        // A mismatched payment given back: the order was never paid, its capacity comes back.
        OrderEvent::OrderRefunded(o) if o.ends_unpaid() => (
            &o.order.order_id,
            o.order.coupon_code.as_ref(),
            Some(RedemptionAction::Cancel),
        ),
        _ => return Ok(()),
    };
    let Some(code) = code else {
        return Ok(());
    };
    let id = RedemptionId::parse(order_id).map_err(anyhow::Error::msg)?;
    // Any message of the order says it exists (an `OrderCreated` may come after its `OrderPaid`
    // when a relay re-sent it).
    store::mark_ordered(conn, code, &id, now)?;
    let Some(action) = action else {
        return Ok(());
    };
    match store::settle_in(conn, code, &id, action, now)? {
        Settled::Changed(_) | Settled::Unchanged(_) => {}
        // Retrying cannot change these: acknowledged, and told to an operator.
        Settled::Refused(refused) => eprintln!(
            "coupon-events: ALERT: {action:?} of coupon {} for order {order_id} refused: {refused}",
            code.as_str()
        ),
        Settled::UnknownCoupon => eprintln!(
            "coupon-events: ALERT: order {order_id} names coupon {} that no longer exists",
            code.as_str()
        ),
    }
    Ok(())
}

/// The sweep: cancels up to [`SWEEP_LIMIT`] holds whose order never came; how many.
fn cancel_orphans(conn: &Connection, now: i64) -> anyhow::Result<u64> {
    let timeout_s = whole_var("coupon_hold_timeout_seconds", 600)?;
    let before = now - timeout_s * 1000;
    let mut cancelled = 0;
    for (code, id) in store::orphans(conn, before, SWEEP_LIMIT)? {
        if store::cancel_orphan(conn, &code, &id, before, now)? {
            eprintln!(
                "coupon-events: cancelled hold {} of coupon {}: no order within {timeout_s} s",
                id.as_str(),
                code.as_str()
            );
            cancelled += 1;
        }
    }
    Ok(cancelled)
}

/// A whole-number variable (a duration), `default` when the component does not declare it.
fn whole_var(name: &str, default: i64) -> anyhow::Result<i64> {
    match shop_adapter::vars::get(name) {
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|e| anyhow::anyhow!("variable {name} = {v:?}: {e}")),
        Err(_) => Ok(default),
    }
}

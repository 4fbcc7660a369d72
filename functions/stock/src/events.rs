//! The stock context's receiver of order events (the `stock-events` component: this wasm on
//! Spin's Redis trigger, woken by the `doorbell:orders` channel; no service chaining).
//!
//! It drains the `events:orders` stream as consumer group `stock` and settles the reservation
//! each message names: `OrderPaid` sells its units (`fulfil.lua`: reserved -> sold, or, when the
//! reservation was released before the message came, the same units taken from available again,
//! all or none); `OrderCancelled`, `OrderExpired`, `ReservationReleaseOwed` and an
//! `OrderRefunded` from PENDING_PAYMENT (a mismatched payment given back) release it. Both
//! scripts are idempotent by reservation id (a settled reservation answers its state again and
//! moves nothing; a shortfall is remembered), so the reservation's own state is this context's
//! inbox: a message delivered twice changes nothing.
//! Before selling, an `OrderPaid` marks a RESERVED reservation as held for its paid order
//! (`hold.lua`), so if selling fails, however often and even once the message is dead-lettered,
//! the TTL sweep keeps those units for the order (an alert) until the message is applied.
//! `FlashOrderPlaced` / `FlashOrderRefused` answer a flash ticket (`tickets.rs`).
//! Then the TTL sweep releases reservations expired for longer than the domain's
//! `EXPIRY_GRACE_MS`, the last resort for a reservation whose order never said anything.

use std::sync::LazyLock;

use serde::Serialize;
use shop_adapter::outbox::{self, Message, Outgoing, Ring, PUBLISH_LUA};
use shop_adapter::receiver::{self, DrainOptions, DrainReport, Envelope};
use shop_adapter::redis::Script;
use shop_domain::messages::{OrderEvent, PaidOrderOutOfStock, StockEvent, Topic};
use shop_domain::reservation::ReservationId;

use crate::redis::{keys, Store, HOLD, HOLDINGS_LUA, RELEASE};
use crate::settle::{self, RETENTION_MS};

/// The topic of this context's own messages (to the order context).
pub const TOPIC: &str = StockEvent::TOPIC;

/// The adapter's `publish`, `holdings.lua`'s `let_go` and `flash_units.lua`, then `fulfil.lua`,
/// which calls them.
static FULFIL: LazyLock<String> = LazyLock::new(|| {
    [
        PUBLISH_LUA,
        HOLDINGS_LUA,
        include_str!("lua/flash_units.lua"),
        include_str!("lua/fulfil.lua"),
    ]
    .join("\n")
});

/// What one run of the receiver did.
#[derive(Debug, Serialize)]
pub struct Received {
    #[serde(flatten)]
    pub drained: DrainReport,
    pub expired: u64,
    /// Expired reservations the sweep kept for a paid order (an alert each).
    pub held: u64,
}

/// Spin's Redis trigger: a ring of `doorbell:orders`.
#[spin_sdk::redis_component]
fn on_order_event(doorbell: Vec<u8>) -> anyhow::Result<()> {
    let r = receive(receiver::wants_sweep(&doorbell))?;
    eprintln!(
        "stock-events: read {} applied {} failed {} dead-lettered {} expired {} held {}",
        r.drained.read,
        r.drained.applied,
        r.drained.failed,
        r.drained.dead_lettered,
        r.expired,
        r.held
    );
    Ok(())
}

/// Drains the order messages, then, with `sweep` (the compensator's periodic ring, not every
/// fast-path ring), runs the reservation TTL sweep. `POST /api/stock/events/drain` runs it where
/// there is no Redis trigger (Fermyon Cloud: an external scheduler calls the route).
pub fn receive(sweep: bool) -> anyhow::Result<Received> {
    let url = shop_adapter::vars::get("redis_url")?;
    let report = receiver::drain(&url, "orders", "stock", &DrainOptions::default(), apply)?;
    let (expired, held) = if sweep {
        let store = Store::open().map_err(|p| anyhow::anyhow!("{}", p.detail))?;
        let swept =
            crate::cmd::expire::sweep(&store, None).map_err(|p| anyhow::anyhow!("{}", p.detail))?;
        crate::cmd::expire::alert_held(&swept);
        (swept.released, swept.held)
    } else {
        (0, 0)
    };
    Ok(Received {
        drained: report,
        expired,
        held,
    })
}

/// Settles the reservation one order message names. Business refusals (a paid order whose units
/// are gone and cannot be taken again) are logged and acknowledged: retrying cannot change them.
fn apply(env: &Envelope) -> anyhow::Result<()> {
    let (paid, id) = match env.decode::<OrderEvent>()? {
        OrderEvent::OrderPaid(m) => (true, m.order.reservation_id),
        OrderEvent::OrderCancelled(m) => (false, m.order.reservation_id),
        OrderEvent::OrderExpired(m) => (false, m.order.reservation_id),
        // A mismatched payment given back: the order was never paid, its units go back.
        OrderEvent::OrderRefunded(m) if m.ends_unpaid() => (false, m.order.reservation_id),
        OrderEvent::ReservationReleaseOwed(m) => (false, m.reservation_id),
        OrderEvent::FlashOrderPlaced(m) => return crate::tickets::placed(&m),
        OrderEvent::FlashOrderRefused(m) => return crate::tickets::refused(&m),
        OrderEvent::OrderCreated(_)
        | OrderEvent::RefundRequired(_)
        | OrderEvent::OrderRefunded(_) => return Ok(()),
    };
    let store = Store::open().map_err(|p| anyhow::anyhow!("{}", p.detail))?;
    let reply = match paid {
        true => {
            hold(&store, &id, env)?;
            fulfil(&store, &id, env)?
        }
        false => settle::run(&store, &id, &RELEASE).map_err(|p| anyhow::anyhow!("{}", p.detail))?,
    };
    match (paid, reply.first().map(String::as_str)) {
        (_, Some("DONE")) => {}
        // Released before the payment's message came, and every unit was still there: sold.
        (true, Some("RETAKEN")) => eprintln!(
            "stock-events: OrderPaid for order {} sold reservation {id} again from available stock",
            env.aggregate_id
        ),
        // A release of a reservation that is gone has nothing left to do. A payment whose
        // units are gone (SHORT: the order context was told in the same step) or whose record
        // is gone (an old message replayed, or lost data: nobody is told) sold nothing: an alert.
        (true, _) | (_, None) => alert(env, &id, &reply),
        (_, Some("UNKNOWN")) => {}
        (_, Some(_)) => alert(env, &id, &reply),
    }
    Ok(())
}

/// Marks a RESERVED reservation as held for the paid order (`hold.lua`) before it is sold, so
/// the TTL sweep never releases it, even while selling fails and its message is retried or
/// dead-lettered.
fn hold(store: &Store, id: &ReservationId, paid: &Envelope) -> anyhow::Result<()> {
    let rkey = keys::reservation(id.as_str());
    store
        .run(&HOLD, &[rkey.as_str()], &[paid.aggregate_id.as_str()])
        .map_err(|p| anyhow::anyhow!("{}", p.detail))?;
    Ok(())
}

/// Runs `fulfil.lua` for a paid order's reservation, with the `PaidOrderOutOfStock` message the
/// script sends to the order context if it cannot sell the units.
fn fulfil(store: &Store, id: &ReservationId, paid: &Envelope) -> anyhow::Result<Vec<String>> {
    // fulfil.lua fills `short` when it decides the units are gone.
    let short = StockEvent::PaidOrderOutOfStock(PaidOrderOutOfStock {
        order_id: paid.aggregate_id.clone(),
        reservation_id: id.clone(),
        short: Vec::new(),
    });
    let message = Outgoing::unstored(&Message::new(
        &short,
        &paid.aggregate_id,
        paid.trace_id.as_deref(),
        shop_adapter::ids::now_ms(),
    )?)?;
    // Appended only: the order context reads it on its periodic ring (it is rare and needs no
    // one woken at once), so no receiver has to subscribe to a `stock` doorbell.
    let ([stream, pending], publish_args) =
        outbox::publish_call(TOPIC, std::slice::from_ref(&message), Ring::Later);
    let retention = RETENTION_MS.to_string();
    let mut args = vec![id.as_str(), keys::PRODUCT_PREFIX, retention.as_str()];
    args.extend(publish_args.iter().map(|a| a.as_ref()));
    args.push(keys::SALE_PREFIX);
    let rkey = keys::reservation(id.as_str());
    let script = Script {
        name: "fulfil",
        source: FULFIL.as_str(),
    };
    store
        .run(&script, &[&rkey, keys::EXPIRIES, &stream, &pending], &args)
        .map_err(|p| anyhow::anyhow!("{}", p.detail))
}

/// A settlement that cannot happen (a paid order whose units cannot be sold: the order needs a
/// refund): logged for an operator, and acknowledged, since retrying cannot change it.
fn alert(env: &Envelope, id: &ReservationId, reply: &[String]) {
    let short = match reply.first().map(String::as_str) {
        Some("SHORT") => format!(" short {:?}", reply.get(4..).unwrap_or_default()),
        _ => String::new(),
    };
    eprintln!(
        "stock-events: ALERT {} for order {} could not settle reservation {id}: {:?} {:?}{short}",
        env.kind,
        env.aggregate_id,
        reply.first(),
        reply.get(1)
    );
}

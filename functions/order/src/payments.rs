//! How a payment reaches an order: the `order-events` component (this wasm on Spin's Redis
//! trigger, woken by `doorbell:payments`; no service chaining) drains the `events:payments`
//! stream as consumer group `order` and applies each message behind the inbox, atomically with
//! its effect (a savepoint per message inside one transaction per drained batch, so a burst of
//! payments costs one commit; a message that fails undoes only its savepoint, and a batch whose
//! whole transaction SQLite rolled back is applied again message by message by the receiver, so
//! only the message at fault is retried and, in the end, dead-lettered):
//!
//! - `PaymentSucceeded` for a PENDING_PAYMENT order with the same amount and currency: PAID
//!   (version + 1, the payment remembered) and `OrderPaid` in the outbox, which makes the stock
//!   context sell the order's units. A repeat for the payment that already
//!   paid the order changes nothing. Anything else (unknown order, amount or currency mismatch,
//!   an order already CANCELLED / EXPIRED / paid by another payment) leaves the order untouched
//!   and writes `RefundRequired` saying why (the order remembers the reason and the payment).
//! - `PaymentRefunded` in full: the order REFUNDED (see [`refunded`]), including an unpaid one
//!   whose mismatched payment the shop sent back.
//! - `PaymentFailed`: the order stays payable until it expires; only the inbox records it.
//! - Anything else is acknowledged.
//!
//! On every ring it also drains the `events:flash` stream (the same group; `doorbell:flash` rings
//! this receiver too): each `FlashOrderRequested` becomes its ticket's order ([`crate::flash`]).
//!
//! On the compensator's periodic ring it also drains the `events:stock` stream (the same group):
//! - `PaidOrderOutOfStock`: the stock context could not sell a paid order's units (they were
//!   released before the payment reached it, and are gone): the order is CANCELLED
//!   (`OrderCancelled` with reason `out-of-stock`) and `RefundRequired` is written, once.
//!
//! After the drain, the periodic sweep of the order context (the compensator rings this doorbell
//! on every run): unpaid orders past their deadline expire (`OrderExpired`, which releases their
//! stock), abandoned Idempotency-Key claims are given up (`ReservationReleaseOwed`), and finished
//! claims past their retention are purged.

use serde::Serialize;
use shop_adapter::receiver::{self, Apply, DrainOptions, DrainReport, Envelope, Unreadable};
use shop_adapter::sqlite::{Savepoint, Tx};
use shop_domain::messages::{
    FlashRequest, OrderEvent, PaidOrderOutOfStock, PaymentEvent, PaymentRefunded, PaymentSucceeded,
    RefundReason, RefundRequired, StockEvent, Topic,
};
use shop_domain::order::{OrderCommand, OrderStatus, Outcome};
use shop_domain::payment::ProviderId;
use shop_domain::placed_order::PlacedOrder;
use spin_sdk::sqlite::Connection;

use crate::db::{self, Shards};
use crate::ids;
use crate::store::claims;
use crate::store::orders::{self, Event};
use crate::store::outbox::{self, Ring};

/// The topics and the consumer group this receiver drains.
const TOPIC: &str = PaymentEvent::TOPIC;
const STOCK_TOPIC: &str = StockEvent::TOPIC;
const FLASH_TOPIC: &str = FlashRequest::TOPIC;
const GROUP: &str = "order";

/// What one run of the receiver did.
#[derive(Debug, Default, Serialize)]
pub struct Received {
    #[serde(flatten)]
    pub drained: DrainReport,
    pub expired: u64,
    pub abandoned: u64,
    pub purged: i64,
}

/// Spin's Redis trigger: a ring of `doorbell:payments`.
#[spin_sdk::redis_component]
fn on_doorbell(payload: Vec<u8>) -> anyhow::Result<()> {
    let r = receive(receiver::wants_sweep(&payload))?;
    eprintln!(
        "order-events: read {} applied {} failed {} dead-lettered {} expired {} abandoned {} purged {}",
        r.drained.read,
        r.drained.applied,
        r.drained.failed,
        r.drained.dead_lettered,
        r.expired,
        r.abandoned,
        r.purged
    );
    Ok(())
}

/// Drains the payment messages (with `sweep` also the stock context's), then, with `sweep`,
/// runs the order context's periodic repairs, in every shard.
/// The Redis trigger runs it on every ring; `POST /api/orders/events/drain` runs it where there
/// is no Redis trigger (Fermyon Cloud: an external scheduler calls the route).
pub fn receive(sweep: bool) -> anyhow::Result<Received> {
    let shards = db::open_all().map_err(|p| anyhow::anyhow!("{}", p.detail))?;
    let url = shop_adapter::vars::get("redis_url")?;
    let mut batch = Batch::new(&shards);
    let report = drain(&url, sweep, &mut batch);
    let mut written = std::mem::take(&mut batch.written);
    drop(batch);
    // The compensator's ring asks for the sweep too; it runs even when the drain failed (Redis
    // down): expiry must not wait for it.
    let now = ids::now_ms();
    let mut received = Received::default();
    if sweep {
        let swept = crate::sweep::sweep(&shards, now)?;
        swept.add_to(&mut written);
        received.expired = swept.expired_count();
        received.abandoned = swept.abandoned_count();
        for conn in shards.iter() {
            received.purged += claims::purge_finished(conn, now - crate::retention::keep_ms())?;
        }
    }
    for (conn, written) in shards.iter().zip(&written) {
        outbox::publish(conn, written, Ring::Now);
    }
    received.drained = report?;
    Ok(received)
}

/// Drains the payment messages and the flash sale's order requests (`flash`, whose doorbell
/// rings this same receiver) and, on the periodic ring (`sweep`), the stock context's: those
/// are rare and appended without a ring of their own. Every drain runs even if one fails.
fn drain(url: &str, sweep: bool, batch: &mut Batch<'_>) -> anyhow::Result<DrainReport> {
    let options = DrainOptions::default();
    let payments = receiver::drain(url, TOPIC, GROUP, &options, &mut *batch);
    let flash = receiver::drain(url, FLASH_TOPIC, GROUP, &options, &mut *batch);
    let stock = match sweep {
        true => receiver::drain(url, STOCK_TOPIC, GROUP, &options, &mut *batch),
        false => Ok(DrainReport::default()),
    };
    let mut report = payments?;
    report += flash?;
    report += stock?;
    Ok(report)
}

/// One transaction per drained batch in each shard it touches, a savepoint per message; per
/// shard, the ids of the outbox messages the committed batches wrote.
///
/// A message is applied in the shard holding its order ([`route`]), with its inbox row there.
/// Shards are entered in index order only (a message for a lower shard first commits what is
/// open), so two receivers never wait for each other's shards. A shard committed early and a
/// later one failing is safe: nothing of the batch is acknowledged, and the redelivered
/// messages the early shard applied are dropped by its inbox.
struct Batch<'c> {
    shards: &'c Shards,
    txs: Vec<Option<Tx<'c>>>,
    written: Vec<Vec<String>>,
    /// Written by the open transactions, not committed yet.
    pending: Vec<Vec<String>>,
    /// SQLite rolled a transaction back (a message's failure took it with it, or an early
    /// commit failed): nothing more of this batch can be applied or committed.
    broken: bool,
}

impl<'c> Batch<'c> {
    fn new(shards: &'c Shards) -> Self {
        let n = shards.conns.len();
        Batch {
            shards,
            txs: (0..n).map(|_| None).collect(),
            written: vec![Vec::new(); n],
            pending: vec![Vec::new(); n],
            broken: false,
        }
    }

    /// The connection of shard `k`, inside this batch's transaction there.
    fn enter(&mut self, k: usize) -> anyhow::Result<&'c Connection> {
        let conn = &self.shards.conns[k].1;
        if self.txs[k].is_none() {
            if self.txs[k + 1..].iter().any(Option::is_some) {
                self.commit_open().inspect_err(|_| self.broken = true)?;
            }
            self.txs[k] = Some(Tx::begin(conn)?);
        }
        Ok(conn)
    }

    /// Commits every open transaction; what they wrote moves to `written`. On a failure the
    /// rest are rolled back (dropped).
    fn commit_open(&mut self) -> anyhow::Result<()> {
        for k in 0..self.txs.len() {
            if let Some(tx) = self.txs[k].take() {
                tx.commit()?;
                let done = std::mem::take(&mut self.pending[k]);
                self.written[k].extend(done);
            }
        }
        Ok(())
    }
}

impl Apply for &mut Batch<'_> {
    fn begin_batch(&mut self) -> anyhow::Result<()> {
        self.broken = false;
        Ok(())
    }

    fn apply(&mut self, env: &Envelope) -> anyhow::Result<()> {
        anyhow::ensure!(!self.broken, "the batch's transaction was rolled back");
        let msg = Incoming::decode(env)?;
        let k = route(self.shards, env, &msg)?;
        let conn = self.enter(k)?;
        let step = Savepoint::begin(conn)?;
        match apply(conn, env, &msg) {
            Ok(written) => {
                step.release()?;
                self.pending[k].extend(written);
                Ok(())
            }
            Err(e) => {
                self.broken = step.rollback().is_err();
                Err(e)
            }
        }
    }

    fn rolled_back(&self) -> bool {
        self.broken
    }

    fn commit_batch(&mut self) -> anyhow::Result<()> {
        if self.broken {
            self.abort_batch();
            anyhow::bail!("the batch's transaction was rolled back");
        }
        let committed = self.commit_open();
        if committed.is_err() {
            self.abort_batch();
        }
        committed
    }

    fn abort_batch(&mut self) {
        self.pending.iter_mut().for_each(Vec::clear);
        self.txs.iter_mut().for_each(|tx| drop(tx.take())); // dropped: rolled back
    }
}

/// A message this receiver drains, as the contract types it (by the topic it was sent on).
enum Incoming {
    Payment(PaymentEvent),
    Flash(FlashRequest),
    Stock(StockEvent),
}

impl Incoming {
    /// [`Unreadable`] (dead-lettered at once) for a topic or kind this receiver does not have,
    /// or a payload that does not fit its type.
    fn decode(env: &Envelope) -> Result<Incoming, Unreadable> {
        match env.topic.as_str() {
            PaymentEvent::TOPIC => env.decode().map(Incoming::Payment),
            FlashRequest::TOPIC => env.decode().map(Incoming::Flash),
            StockEvent::TOPIC => env.decode().map(Incoming::Stock),
            other => Err(Unreadable {
                message_id: env.message_id.clone(),
                kind: env.kind.clone(),
                reason: format!("topic {other:?} is not one this receiver drains"),
            }),
        }
    }

    /// The order it is about, if it names one.
    fn order_id(&self) -> Option<&str> {
        match self {
            Incoming::Payment(PaymentEvent::PaymentSucceeded(p)) => Some(&p.order_id),
            Incoming::Payment(PaymentEvent::PaymentFailed(p)) => Some(&p.order_id),
            Incoming::Payment(PaymentEvent::PaymentRefunded(p)) => Some(&p.order_id),
            Incoming::Stock(StockEvent::PaidOrderOutOfStock(s)) => Some(&s.order_id),
            Incoming::Flash(_) => None,
        }
    }
}

/// The shard a message is applied in: the one holding its order (looked up shard by shard:
/// the order id does not say whose it is). A message for no known order goes to the shard its
/// order id (or, without one, its message id) hashes to, so a redelivery finds its inbox row in
/// the same place.
fn route(shards: &Shards, env: &Envelope, msg: &Incoming) -> anyhow::Result<usize> {
    // A flash request creates its order: in its buyer's shard.
    if let Incoming::Flash(FlashRequest::FlashOrderRequested(req)) = msg {
        return Ok(shards.count.shard_of(&req.customer).get() as usize);
    }
    let order_id = msg.order_id().unwrap_or_default();
    if !order_id.is_empty() {
        for (k, conn) in shards.iter().enumerate() {
            if orders::owner(conn, order_id)?.is_some() {
                return Ok(k);
            }
        }
    }
    let key = if order_id.is_empty() {
        &env.message_id
    } else {
        order_id
    };
    Ok(shards.count.shard_of(key).get() as usize)
}

/// Applies one message inside the caller's transaction; returns the ids of the outbox messages
/// it wrote.
fn apply(conn: &Connection, env: &Envelope, msg: &Incoming) -> anyhow::Result<Vec<String>> {
    let now = ids::now_ms();
    if !shop_adapter::inbox::record(conn, &env.message_id, &env.kind, now)? {
        return Ok(Vec::new()); // applied before
    }
    Ok(match msg {
        Incoming::Payment(PaymentEvent::PaymentSucceeded(pay)) => {
            succeeded(conn, pay, now)?.into_iter().collect()
        }
        Incoming::Payment(PaymentEvent::PaymentFailed(_)) => Vec::new(),
        Incoming::Payment(PaymentEvent::PaymentRefunded(r)) => refunded(conn, r, now)?,
        Incoming::Stock(StockEvent::PaidOrderOutOfStock(s)) => out_of_stock(conn, s, now)?,
        Incoming::Flash(FlashRequest::FlashOrderRequested(req)) => {
            crate::flash::place(conn, req, now)?
        }
    })
}

/// `PaymentSucceeded`: PAID + `OrderPaid`, or `RefundRequired` with the reason; the id of the
/// message written (none for a repeat of the payment that already paid the order).
fn succeeded(
    conn: &Connection,
    pay: &PaymentSucceeded,
    now: i64,
) -> anyhow::Result<Option<String>> {
    let Some(order) = orders::load(conn, &pay.order_id)? else {
        return refund(conn, back(pay, RefundReason::UnknownOrder), now).map(Some);
    };
    if order.is_paid_by(pay.payment_intent_id.as_str()) {
        return Ok(None); // the payment that paid this order, announced again
    }
    paid(conn, pay, &order, now).map(Some)
}

/// The checks and the PAID transition of a payment for a known order.
fn paid(
    conn: &Connection,
    pay: &PaymentSucceeded,
    order: &PlacedOrder,
    now: i64,
) -> anyhow::Result<String> {
    if pay.amount.minor() != order.total.minor() {
        return refund(conn, back(pay, RefundReason::AmountMismatch), now);
    }
    if pay.amount.currency() != order.currency {
        return refund(conn, back(pay, RefundReason::CurrencyMismatch), now);
    }
    let to = match order.apply(OrderCommand::Pay) {
        Ok(Outcome::Changed(to)) => to,
        Ok(Outcome::Unchanged(_)) => {
            return refund(conn, back(pay, RefundReason::AlreadyPaid), now)
        }
        Err(_) => return refund(conn, back(pay, too_late(order.status())), now),
    };
    let event = Event::Paid {
        payment_id: pay.payment_intent_id.as_str(),
    };
    orders::transition(conn, order, to, &event, None, now)?
        .ok_or_else(|| anyhow::anyhow!("order {} changed meanwhile", pay.order_id))
}

/// Why a payment for an order in `status` (one that refuses it) goes back.
fn too_late(status: OrderStatus) -> RefundReason {
    match status {
        OrderStatus::Cancelled => RefundReason::OrderCancelled,
        OrderStatus::Expired => RefundReason::OrderExpired,
        OrderStatus::Shipped => RefundReason::OrderShipped,
        OrderStatus::Completed => RefundReason::OrderCompleted,
        OrderStatus::Refunded => RefundReason::OrderRefunded,
        OrderStatus::PendingPayment | OrderStatus::Paid => RefundReason::AlreadyPaid,
    }
}

/// `PaidOrderOutOfStock`: CANCELLED + `OrderCancelled` (reason `out-of-stock`) and
/// `RefundRequired` for the payment that paid it; nothing for an order cancelled already (the
/// same message again). Anything else (no such order, an order that is not PAID) cannot be
/// settled here: an alert, acknowledged.
fn out_of_stock(
    conn: &Connection,
    short: &PaidOrderOutOfStock,
    now: i64,
) -> anyhow::Result<Vec<String>> {
    let order_id = short.order_id.as_str();
    let order = orders::load(conn, order_id)?;
    let (order, to) = match order
        .as_ref()
        .map(|o| (o, o.apply(OrderCommand::Unfulfillable)))
    {
        Some((o, Ok(Outcome::Changed(to)))) => (o, to),
        Some((_, Ok(Outcome::Unchanged(_)))) => return Ok(Vec::new()),
        other => {
            let why = other.map_or("no such order".into(), |(_, e)| format!("{e:?}"));
            eprintln!("order-events: ALERT PaidOrderOutOfStock for order {order_id:?}: {why}");
            return Ok(Vec::new());
        }
    };
    let cancelled = orders::transition(conn, order, to, &Event::OutOfStock, None, now)?
        .ok_or_else(|| anyhow::anyhow!("order {order_id} changed meanwhile"))?;
    let Some(paid) = order.paid.as_ref() else {
        eprintln!("order-events: ALERT PaidOrderOutOfStock for order {order_id:?}: no payment");
        return Ok(vec![cancelled]);
    };
    let refund_required = RefundRequired {
        order_id: order_id.to_owned(),
        payment_intent_id: ProviderId::parse(&paid.payment_id)
            .map_err(|e| anyhow::anyhow!("order {order_id} payment id: {e}"))?,
        amount: order.total,
        event_id: None,
        reason: RefundReason::OutOfStock,
    };
    Ok(vec![cancelled, refund(conn, refund_required, now)?])
}

/// `PaymentRefunded` in full: the order it paid (PAID by this payment), the cancelled or
/// expired order it came late for, or the unpaid order whose mismatched payment the shop asked
/// to give back (this very payment) is REFUNDED (`OrderRefunded`; from PENDING_PAYMENT its
/// stock and coupon go back). A partial refund, a refund of another payment of a paid order (a
/// double charge, or a mismatched payment before the right one paid it), of a payment the shop
/// did not ask to refund for an unpaid order, or of an order in another status changes nothing.
fn refunded(conn: &Connection, r: &PaymentRefunded, now: i64) -> anyhow::Result<Vec<String>> {
    if r.amount_refunded < r.amount.minor() {
        return Ok(Vec::new());
    }
    let Some(order) = orders::load(conn, &r.order_id)? else {
        return Ok(Vec::new());
    };
    let payment_id = r.payment_intent_id.as_str();
    let ours = match order.status() {
        OrderStatus::Paid => order.is_paid_by(payment_id),
        OrderStatus::PendingPayment => orders::refund_asked_for(conn, &r.order_id, payment_id)?,
        _ => true,
    };
    if !ours {
        return Ok(Vec::new());
    }
    let Ok(Outcome::Changed(to)) = order.apply(OrderCommand::Refund) else {
        return Ok(Vec::new());
    };
    let written = orders::transition(conn, &order, to, &Event::Refunded, None, now)?
        .ok_or_else(|| anyhow::anyhow!("order {} changed meanwhile", r.order_id))?;
    Ok(vec![written])
}

/// The refund of `pay`, for `reason`.
fn back(pay: &PaymentSucceeded, reason: RefundReason) -> RefundRequired {
    RefundRequired {
        order_id: pay.order_id.clone(),
        payment_intent_id: pay.payment_intent_id.clone(),
        amount: pay.amount,
        event_id: Some(pay.event_id.as_str().to_owned()),
        reason,
    }
}

/// The money must go back (the order is left as it is, unless the caller changed it); the
/// reason is in the message.
fn refund(conn: &Connection, refund: RefundRequired, now: i64) -> anyhow::Result<String> {
    eprintln!(
        "order-events: RefundRequired for payment {} of order {}: {}",
        refund.payment_intent_id,
        refund.order_id,
        refund.reason.as_str()
    );
    let aggregate = match refund.order_id.is_empty() {
        true => refund.payment_intent_id.as_str().to_owned(),
        false => refund.order_id.clone(),
    };
    // The order (if the shop has it) says why its money goes back.
    let payment_id = refund.payment_intent_id.as_str();
    orders::set_refund_reason(conn, &refund.order_id, payment_id, refund.reason)?;
    let message = OrderEvent::RefundRequired(refund);
    let message = outbox::Message::new(&message, &aggregate, None, now)?;
    outbox::append(conn, &message)
}

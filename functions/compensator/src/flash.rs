//! Flash sale reconciliation (each run, and `GET /api/ops/flash-sales` for an operator):
//! per sale, the units taken in Redis against the flash orders in SQLite.
//!
//! `taken` (quantity - remaining: units held by tickets) should equal `pending` (tickets whose
//! order is not created yet) plus the sale's live orders in SQLite (awaiting payment, paid,
//! shipped or completed: an expired or cancelled one gave its unit back). `drift` is the
//! difference; it can be non-zero for a moment (an order expired in SQLite whose reservation
//! the stock sweep has not released yet), so it is reported and logged, not acted upon.
//!
//! Repaired where the cause is known: a ticket PENDING for longer than
//! `flash_pending_timeout_seconds` lost its order request (or its answer) on the way, so its
//! request is appended again (reappend_flash.lua); the order context creates the order, or
//! announces the one it has, exactly once per ticket. Overlapping runs are safe: the script
//! re-appends and re-dates each ticket in one step.

use serde::Serialize;
use shop_adapter::flash as keys;
use shop_adapter::redis::Script;
use shop_domain::flash::{TicketStatus, TOPIC};
use shop_domain::order::OrderStatus;
use spin_sdk::redis::{Connection, RedisParameter, RedisResult};
use spin_sdk::sqlite::Value;

use crate::run::has_table;

const REAPPEND: Script = Script {
    name: "reappend_flash",
    source: include_str!("../lua/reappend_flash.lua"),
};

/// Tickets re-appended per sale and run at most.
const BATCH: &str = "500";

/// One sale's reconciliation.
#[derive(Debug, Default, Serialize)]
pub struct SaleReport {
    pub sale_id: String,
    pub quantity: i64,
    pub remaining: i64,
    pub sold: i64,
    pub taken: i64,
    pub pending: i64,
    /// The sale's orders in SQLite that hold a unit (not expired or cancelled).
    pub live_orders: i64,
    /// taken - pending - live_orders.
    pub drift: i64,
    /// Order requests sent again this run (`repair`).
    pub reappended: u64,
    /// PENDING tickets whose request could not be sent again (nothing stored): an alert.
    pub unsendable: u64,
}

/// Every sale's report; with `repair`, PENDING tickets past the timeout get their order request
/// again first. Errors name the sale or database.
pub fn reconcile(url: &str, repair: bool) -> (Vec<SaleReport>, Vec<String>) {
    let mut errors = Vec::new();
    let conn = match shop_adapter::redis::connect(url) {
        Ok(c) => c,
        Err(e) => return (Vec::new(), vec![format!("flash: redis: {e}")]),
    };
    let sales = match strings(&conn, "SMEMBERS", &[keys::SALES]) {
        Ok(s) => s,
        Err(e) => return (Vec::new(), vec![format!("flash: {e:#}")]),
    };
    let mut reports = Vec::new();
    for sale in sales {
        match report(&conn, &sale, repair) {
            Ok(r) => reports.push(r),
            Err(e) => errors.push(format!("flash sale {sale}: {e:#}")),
        }
    }
    (reports, errors)
}

fn report(conn: &Connection, sale: &str, repair: bool) -> anyhow::Result<SaleReport> {
    let mut r = SaleReport {
        sale_id: sale.to_owned(),
        ..SaleReport::default()
    };
    if repair {
        let timeout_ms = (timeout_seconds() * 1000).to_string();
        let (pending_key, stream) = (
            keys::sale_pending(sale),
            shop_adapter::outbox::stream_key(TOPIC),
        );
        let doorbell = shop_adapter::outbox::doorbell(TOPIC);
        let reply = shop_adapter::redis::run(
            conn,
            &REAPPEND,
            &[&pending_key, &stream],
            &[
                &timeout_ms,
                keys::TICKET_PREFIX,
                &doorbell,
                BATCH,
                TicketStatus::Pending.as_str(),
            ],
        )?;
        let n = |i: usize| {
            reply
                .get(i)
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0)
        };
        (r.reappended, r.unsendable) = (n(0), n(2));
    }
    let f = strings(
        conn,
        "HMGET",
        &[&keys::sale(sale), "quantity", "remaining", "sold"],
    )?;
    let n = |i: usize| f.get(i).and_then(|s| s.parse::<i64>().ok()).unwrap_or(0);
    (r.quantity, r.remaining, r.sold) = (n(0), n(1), n(2));
    r.taken = r.quantity - r.remaining;
    let pending = strings(conn, "ZCARD", &[&keys::sale_pending(sale)])?;
    r.pending = pending.first().and_then(|s| s.parse().ok()).unwrap_or(0);
    r.live_orders = live_orders(sale)?;
    r.drift = r.taken - r.pending - r.live_orders;
    Ok(r)
}

/// The sale's orders holding a unit, over every shard of the order context.
fn live_orders(sale: &str) -> anyhow::Result<i64> {
    let gone = [
        OrderStatus::Expired.as_str(),
        OrderStatus::Cancelled.as_str(),
    ];
    let mut total = 0;
    for db in crate::databases()
        .0
        .iter()
        .filter(|d| d.context == "orders")
    {
        let conn = spin_sdk::sqlite::Connection::open(&db.label)?;
        if !has_table(&conn, "flash_orders")? {
            continue; // not migrated yet: no flash order there
        }
        let rows = conn.execute(
            "SELECT COUNT(*) FROM flash_orders f JOIN orders o ON o.order_id = f.order_id
             WHERE f.sale_id = ? AND o.status NOT IN (?, ?)",
            &[
                Value::Text(sale.to_owned()),
                Value::Text(gone[0].to_owned()),
                Value::Text(gone[1].to_owned()),
            ],
        )?;
        total += rows.rows.first().and_then(|r| r.get::<i64>(0)).unwrap_or(0);
    }
    Ok(total)
}

/// `flash_pending_timeout_seconds` (default 60): how long a ticket may wait for its order.
fn timeout_seconds() -> i64 {
    shop_adapter::vars::get("flash_pending_timeout_seconds")
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|s| *s >= 0)
        .unwrap_or(60)
}

/// A command's reply as strings (an integer reply as its decimal text).
fn strings(conn: &Connection, cmd: &str, args: &[&str]) -> anyhow::Result<Vec<String>> {
    let params: Vec<RedisParameter> = args
        .iter()
        .map(|a| RedisParameter::Binary(a.as_bytes().to_vec()))
        .collect();
    let reply = conn.execute(cmd, &params)?;
    Ok(reply
        .into_iter()
        .filter(|r| !matches!(r, RedisResult::Nil))
        .map(shop_adapter::redis::text)
        .collect())
}

/// Logs every sale with drift, and every re-append.
pub fn log(reports: &[SaleReport]) {
    for r in reports {
        if r.drift != 0 || r.reappended > 0 || r.unsendable > 0 {
            eprintln!(
                "compensator: flash sale {} taken {} pending {} live orders {} drift {} reappended {} unsendable {}",
                r.sale_id, r.taken, r.pending, r.live_orders, r.drift, r.reappended, r.unsendable
            );
        }
    }
}

/// `GET /api/ops/flash-sales` (admin): every sale's reconciliation, without repairing.
pub fn route(req: &spin_sdk::http::Request) -> shop_adapter::respond::HandlerResult {
    crate::require_admin(req)?;
    let url = shop_adapter::vars::get("redis_url")
        .map_err(|e| shop_adapter::Problem::internal("read variable redis_url", e))?;
    let (sales, errors) = reconcile(&url, false);
    if let Some(e) = errors.first() {
        return Err(shop_adapter::Problem::unavailable(e.clone()));
    }
    Ok(shop_adapter::respond::json(
        200,
        &serde_json::json!({ "sales": sales }),
    ))
}

//! The order component's SQLite databases, one per shard (labels `orders-shard0` ..
//! `orders-shard{N-1}`, N the variable `order_shards`; a customer's orders live in the shard their
//! id hashes to, `shop_domain::shard`): opened, migrated and checked against the recorded layout on
//! every request, so a fresh deployment needs no separate setup step and a changed N is refused
//! before it can strand an order.

pub use shop_adapter::sqlite::{col_i64, col_opt_str, col_str, int, text};
use shop_adapter::sqlite::{open_migrated_reading, Migration};
use shop_adapter::Problem;
use shop_domain::shard::{LayoutCheck, ShardCount, ShardIndex};
use spin_sdk::sqlite::Connection;

use crate::store::orders;

/// The schema, in files beside the crate so it can be read and reviewed as SQL.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "orders",
        sql: include_str!("../migrations/0001_orders.sql"),
    },
    Migration {
        version: 2,
        name: "outbox",
        sql: include_str!("../migrations/0002_outbox.sql"),
    },
    Migration {
        version: 3,
        name: "idempotency",
        sql: include_str!("../migrations/0003_idempotency.sql"),
    },
    Migration {
        version: 4,
        name: "pending_releases",
        sql: include_str!("../migrations/0004_pending_releases.sql"),
    },
    Migration {
        version: 5,
        name: "outbox_delivery",
        sql: include_str!("../migrations/0005_outbox_delivery.sql"),
    },
    Migration {
        version: 6,
        name: "outbox_indexes",
        sql: shop_adapter::outbox::MIGRATION_SQL,
    },
    Migration {
        version: 7,
        name: "inbox",
        sql: shop_adapter::inbox::MIGRATION_SQL,
    },
    Migration {
        version: 8,
        name: "payments",
        sql: include_str!("../migrations/0008_payments.sql"),
    },
    Migration {
        version: 9,
        name: "idempotency_per_customer",
        sql: include_str!("../migrations/0009_idempotency_per_customer.sql"),
    },
    Migration {
        version: 10,
        name: "shard_layout",
        sql: include_str!("../migrations/0010_shard_layout.sql"),
    },
    Migration {
        version: 11,
        name: "flash_orders",
        sql: include_str!("../migrations/0011_flash_orders.sql"),
    },
    Migration {
        version: 12,
        name: "refunded",
        sql: include_str!("../migrations/0012_refunded.sql"),
    },
    Migration {
        version: 13,
        name: "refund_payment",
        sql: include_str!("../migrations/0013_refund_payment.sql"),
    },
];

/// The layout this shard records: a scalar subquery read in the same statement as the schema
/// version (`open_migrated_reading`), so checking it costs no call of its own.
const LAYOUT_SQL: &str = "SELECT shards FROM shard_layout WHERE id = 1";

/// The order context's shards, from the variable `order_shards` (1..=8; the manifests grant
/// `orders-shard0` .. `orders-shard7`). A bad value is a misconfiguration: 503 and a log line, not
/// a trap.
pub fn shard_count() -> Result<ShardCount, Problem> {
    let raw = shop_adapter::vars::get("order_shards").map_err(|e| misconfigured(&e))?;
    ShardCount::parse(&raw).map_err(|e| misconfigured(&e))
}

fn misconfigured(e: &dyn std::fmt::Display) -> Problem {
    eprintln!("order: MISCONFIGURED variable order_shards: {e}");
    Problem::unavailable(format!(
        "the order context is misconfigured (order_shards: {e}); retry later"
    ))
    .with("variable", "order_shards")
}

/// The shard holding `customer`'s orders, opened, migrated and checked against the layout.
pub fn open_for(customer: &str) -> Result<Connection, Problem> {
    let count = shard_count()?;
    open_shard(count.shard_of(customer), count)
}

/// Every shard, opened and checked, in index order (admin reads, receivers, repairs).
pub struct Shards {
    pub count: ShardCount,
    pub conns: Vec<(ShardIndex, Connection)>,
}

impl Shards {
    /// The connection of the shard holding `customer`'s orders.
    pub fn of(&self, customer: &str) -> &Connection {
        &self.conns[self.count.shard_of(customer).get() as usize].1
    }

    pub fn iter(&self) -> impl Iterator<Item = &Connection> {
        self.conns.iter().map(|(_, c)| c)
    }
}

pub fn open_all() -> Result<Shards, Problem> {
    let count = shard_count()?;
    let conns = count
        .all()
        .map(|i| open_shard(i, count).map(|c| (i, c)))
        .collect::<Result<_, _>>()?;
    Ok(Shards { count, conns })
}

/// Opens shard `index` (migrated), and refuses it when it was
/// written under another number of shards (see [`check_layout`]).
pub fn open_shard(index: ShardIndex, count: ShardCount) -> Result<Connection, Problem> {
    let (conn, recorded) = open_migrated_reading(
        &index.label(),
        crate::COMPONENT,
        MIGRATIONS,
        Some(LAYOUT_SQL),
    )?;
    let recorded = recorded.and_then(|n| u32::try_from(n).ok());
    check_layout(&conn, index, count, recorded)?;
    Ok(conn)
}

/// The number of shards this shard's database records, if any.
fn recorded_layout(conn: &Connection) -> anyhow::Result<Option<u32>> {
    let rows = conn.execute(LAYOUT_SQL, &[])?;
    Ok(rows
        .rows
        .first()
        .and_then(|r| r.get::<i64>(0))
        .and_then(|n| u32::try_from(n).ok()))
}

/// A shard written under the configured count is used; one that records another is refused
/// (503 naming `order_shards` and the reshard step). One with no record takes the layout
/// ([`record_layout`]).
fn check_layout(
    conn: &Connection,
    index: ShardIndex,
    count: ShardCount,
    recorded: Option<u32>,
) -> Result<(), Problem> {
    match LayoutCheck::of(recorded, count) {
        LayoutCheck::Matches => Ok(()),
        LayoutCheck::Mismatch { recorded } => Err(layout_refused(index, recorded, count)),
        LayoutCheck::Unrecorded => record_layout(conn, index, count),
    }
}

/// Records the configured layout on a shard that has none: after shard 0 (the authority) agrees,
/// and only if the orders it may already hold (a database from before sharding, moved to this
/// label) all belong here under it; the first record stands when two requests race.
fn record_layout(conn: &Connection, index: ShardIndex, count: ShardCount) -> Result<(), Problem> {
    if index != ShardIndex::FIRST {
        open_shard(ShardIndex::FIRST, count)?;
    }
    let customers = orders::customers(conn).map_err(|e| unavailable("read customers", e))?;
    if let Some(c) = customers.iter().find(|c| count.shard_of(c) != index) {
        return Err(unrecorded_refused(index, count, c));
    }
    let now = crate::ids::now_ms();
    let params = [
        int(i64::from(count.get())),
        int(i64::from(index.get())),
        int(now),
    ];
    conn.execute(RECORD_LAYOUT, &params)
        .map_err(|e| unavailable("record shard layout", e))?;
    match recorded_layout(conn).map_err(|e| unavailable("read shard layout", e))? {
        Some(n) if n != count.get() => Err(layout_refused(
            index,
            ShardCount::new(n).unwrap_or(count),
            count,
        )),
        _ => Ok(()),
    }
}

/// A shard with no layout record holds orders of a customer who hashes elsewhere under the
/// configured count: written under another layout (or before sharding), it must be resharded.
fn unrecorded_refused(index: ShardIndex, count: ShardCount, customer: &str) -> Problem {
    let detail = format!(
        "order_shards is {count} but shard {} records no layout and holds orders of customers \
         who hash to other shards (e.g. {customer:?}): start once with order_shards = 1 if it \
         is the database from before sharding, then run `spin-shop-dev reshard --from 1 --to \
         {count}` with the app stopped",
        index.label()
    );
    eprintln!("order: REFUSED {detail}");
    Problem::unavailable(detail)
        .with("variable", "order_shards")
        .with("configured_shards", count.get())
}

/// Written once per shard; a second writer's row is ignored (the first record stands).
pub const RECORD_LAYOUT: &str =
    "INSERT OR IGNORE INTO shard_layout (id, shards, shard, recorded_ms) VALUES (1, ?, ?, ?)";

fn layout_refused(index: ShardIndex, recorded: ShardCount, configured: ShardCount) -> Problem {
    let detail = format!(
        "order_shards is {configured} but shard {} was written with order_shards = {recorded}: \
         customers would hash to other shards and their orders would be stranded; stop the app \
         and run `spin-shop-dev reshard --from {recorded} --to {configured}`, or set \
         order_shards back to {recorded}",
        index.label()
    );
    eprintln!("order: REFUSED {detail}");
    Problem::unavailable(detail)
        .with("variable", "order_shards")
        .with("recorded_shards", recorded.get())
        .with("configured_shards", configured.get())
}

/// A database failure: 503 (busy, locked, unreachable are all worth a retry), logged in full.
pub fn unavailable(context: &str, err: impl std::fmt::Display) -> Problem {
    shop_adapter::sqlite::unavailable(crate::COMPONENT, context, err)
}

/// Maps a storage failure to the 503 problem once, at the HTTP edge.
pub trait OrUnavailable<T> {
    fn or_unavailable(self, context: &str) -> Result<T, Problem>;
}

impl<T> OrUnavailable<T> for anyhow::Result<T> {
    fn or_unavailable(self, context: &str) -> Result<T, Problem> {
        self.map_err(|e| unavailable(context, format!("{e:#}")))
    }
}

//! The order component's SQLite database (label `orders`): opened and migrated on every request, so a
//! fresh deployment needs no separate setup step.

pub use shop_adapter::sqlite::{col_i64, col_opt_str, col_str, int, text};
use shop_adapter::sqlite::{open_migrated, Migration};
use shop_adapter::Problem;
use spin_sdk::sqlite::Connection;

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
];

/// The order context's SQLite label (runtime-config.toml maps it to a file or a libSQL URL).
pub const LABEL: &str = "orders";

/// Opens `orders` and brings its schema up to date.
pub fn open() -> Result<Connection, Problem> {
    open_migrated(LABEL, crate::COMPONENT, MIGRATIONS)
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

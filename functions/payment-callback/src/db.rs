//! The payment context's SQLite database (label `payments`): opened and migrated on every
//! request, so a fresh deployment needs no separate setup step.

use shop_adapter::sqlite::{open_migrated, Migration};
use shop_adapter::Problem;
use spin_sdk::sqlite::Connection;

pub const LABEL: &str = "payments";

/// The context's own table in a file beside the crate; the outbox and inbox are the shared ones
/// (the compensator relays this outbox and purges this inbox like every other context's).
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "payments",
        sql: include_str!("../migrations/0001_payments.sql"),
    },
    Migration {
        version: 2,
        name: "outbox",
        sql: shop_adapter::outbox::MIGRATION_SQL,
    },
    Migration {
        version: 3,
        name: "inbox",
        sql: shop_adapter::inbox::MIGRATION_SQL,
    },
    Migration {
        version: 4,
        name: "refunds",
        sql: include_str!("../migrations/0004_refunds.sql"),
    },
    Migration {
        version: 5,
        name: "refund_attempts",
        sql: include_str!("../migrations/0005_refund_attempts.sql"),
    },
];

/// Opens `payments` and brings its schema up to date.
pub fn open() -> Result<Connection, Problem> {
    open_migrated(LABEL, crate::COMPONENT, MIGRATIONS)
}

/// A database failure: 503 (busy, locked, unreachable are all worth a retry, and the provider
/// retries any non-2xx), logged in full.
pub fn unavailable(context: &str, err: impl std::fmt::Display) -> Problem {
    shop_adapter::sqlite::unavailable(crate::COMPONENT, context, err)
}

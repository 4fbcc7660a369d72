//! The coupon component's SQLite database (label `coupons`): opened and migrated on every
//! request, so a fresh deployment needs no separate setup step.

use shop_adapter::sqlite::{open_migrated, Migration};
use shop_adapter::Problem;
use spin_sdk::sqlite::Connection;

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "coupons",
        sql: include_str!("../migrations/0001_coupons.sql"),
    },
    Migration {
        version: 2,
        name: "inbox",
        sql: shop_adapter::inbox::MIGRATION_SQL,
    },
    Migration {
        version: 3,
        name: "orders",
        sql: include_str!("../migrations/0003_orders.sql"),
    },
];

/// The coupon context's SQLite label (runtime-config.toml maps it to a file or a libSQL URL).
pub const LABEL: &str = "coupons";

/// Opens `coupons` and brings its schema up to date.
pub fn open() -> Result<Connection, Problem> {
    open_migrated(LABEL, crate::COMPONENT, MIGRATIONS)
}

/// A database failure: 503, logged in full.
pub fn unavailable(context: &str, err: impl std::fmt::Display) -> Problem {
    shop_adapter::sqlite::unavailable(crate::COMPONENT, context, err)
}

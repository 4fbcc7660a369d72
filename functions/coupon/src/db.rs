//! The coupon component's SQLite database (label `coupons`): opened and migrated on every
//! request, so a fresh deployment needs no separate setup step.

use shop_adapter::sqlite::{migrate, Migration};
use shop_adapter::Problem;
use spin_sdk::sqlite::Connection;

pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "coupons",
    sql: include_str!("../migrations/0001_coupons.sql"),
}];

/// The coupon context's SQLite label (runtime-config.toml maps it to a file or a libSQL URL).
pub const LABEL: &str = "coupons";

/// Opens `coupons` and brings its schema up to date.
pub fn open() -> Result<Connection, Problem> {
    let conn = Connection::open(LABEL).map_err(|e| unavailable("open database", e))?;
    migrate(&conn, crate::COMPONENT, MIGRATIONS).map_err(|e| unavailable("migrate database", e))?;
    Ok(conn)
}

/// A database error: logged with its cause, answered as a 503 the client may retry.
pub fn unavailable(context: &str, err: impl std::fmt::Display) -> Problem {
    eprintln!("coupon: {context}: {err:#}");
    Problem::unavailable("the coupon store is unavailable, retry later")
}

//! The shop's business rules, free of I/O so they run natively under plain `cargo test`
//! and inside every wasm component alike.
//!
//! Types here *parse* their input (see `Sku::parse`): once a value exists it is valid, so the
//! functions never re-check it.

pub mod adjustment;
pub mod coupon;
pub mod cursor;
pub mod field;
pub mod flash;
pub mod idempotency;
pub mod money;
pub mod new_order;
pub mod order;
pub mod payment;
pub mod placed_order;
pub mod pricing;
pub mod product;
pub mod reservation;
pub mod shard;
pub mod sku;
pub mod stock;
pub mod timestamp;
pub mod trace;

pub use money::{Currency, Money, MoneyError};
pub use sku::{Sku, SkuError};

//! The shop's business rules, free of I/O so they run natively under plain `cargo test`
//! and inside every wasm component alike.
//!
//! Types here *parse* their input (see `Sku::parse`): once a value exists it is valid, so the
//! functions never re-check it.

/// `Deserialize` for a type through its `parse(&str) -> Result<Self, impl Display>`: what is read
/// is as valid as what is parsed.
#[macro_export]
macro_rules! deserialize_by_parse {
    ($t:ty) => {
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                <$t>::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

pub mod adjustment;
pub mod coupon;
pub mod cursor;
pub mod field;
pub mod flash;
pub mod idempotency;
mod key_safe;
pub mod messages;
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

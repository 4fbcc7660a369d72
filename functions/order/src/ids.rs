//! Random identifiers and the clock: the adapter's, shared by every function.

pub use shop_adapter::ids::{now_ms, random_id, rfc3339, sortable_id};

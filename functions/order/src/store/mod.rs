//! The order context's storage, one module per table or concern. Commands call these functions
//! and compose them inside their own transactions; none of them knows a column name. Functions
//! return domain types and `anyhow` errors; the HTTP edge maps a failure to 503 once
//! ([`crate::db::OrUnavailable`]).

pub mod claims;
pub mod flash_orders;
pub mod leases;
pub mod orders;
pub mod outbox;
pub mod releases;

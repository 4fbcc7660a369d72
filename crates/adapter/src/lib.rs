//! Shared adapter over spin-sdk. Functions depend on this crate and on `shop-domain`, never on
//! each other. Everything here is about HTTP shapes, store handles and message transport, not
//! business rules.

pub mod auth;
pub mod body;
pub mod dead_letter;
pub mod flash;
pub mod health;
pub mod idempotency;
pub mod identity;
pub mod ids;
pub mod inbox;
pub mod outbox;
pub mod problem;
pub mod receiver;
pub mod redis;
pub mod respond;
pub mod sqlite;
pub mod vars;

pub use problem::Problem;

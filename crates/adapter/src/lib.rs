//! Shared adapter over spin-sdk. Functions depend on this crate and on `shop-domain`, never on
//! each other. Everything here is about HTTP shapes and store handles, not business rules.

pub mod auth;
pub mod body;
pub mod health;
pub mod problem;
pub mod respond;
pub mod sqlite;

pub use problem::Problem;

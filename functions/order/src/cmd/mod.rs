//! One file per command.

pub mod cancel;
pub mod compensate;
pub mod create;
pub mod drain;
pub mod get;
pub mod list;

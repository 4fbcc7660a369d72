//! One file per command. Each is thin: parse the request into domain values, run one atomic
//! Redis step (a Lua script), answer.

pub mod adjust;
pub mod confirm;
pub mod drain;
pub mod expire;
pub mod get_product;
pub mod get_reservation;
pub mod get_sale;
pub mod get_ticket;
pub mod purchase;
pub mod put_product;
pub mod put_sale;
pub mod release;
pub mod reserve;

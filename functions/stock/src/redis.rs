//! The component's Redis access: key names, and running the Lua scripts that make every stock
//! change one atomic step.
//!
//! Scripts run through `shop_adapter::redis` (EVALSHA with an EVAL fallback).
//!
//! Every script returns a flat array of strings (`{outcome, ...}`), never nested arrays or Lua
//! errors for business outcomes: hosts flatten nested arrays in `execute` results, and a flat
//! array of bulk strings survives every host and Redis version unchanged.

use std::rc::Rc;

use shop_adapter::Problem;
use spin_sdk::redis::{Connection, RedisParameter, RedisResult};

/// Namespaced keys. A SKU and a reservation id are restricted to `A-Z a-z 0-9 - _ . :` by the
/// domain, so they are safe inside keys.
pub mod keys {
    pub const PRODUCT_PREFIX: &str = "stock:product:";
    pub const RESERVATION_PREFIX: &str = "stock:reservation:";
    /// ZSET of RESERVED reservation ids scored by expires_at (ms).
    pub const EXPIRIES: &str = "stock:reservations:expiries";

    /// Hash: name, price, currency, available, reserved, sold, fence (last applied token).
    pub fn product(sku: &str) -> String {
        format!("{PRODUCT_PREFIX}{sku}")
    }

    /// String: the owner token of the current admin writer of `sku`.
    pub fn lock(sku: &str) -> String {
        format!("stock:lock:{sku}")
    }

    /// Integer: the last fencing token issued for `sku`.
    pub fn fence(sku: &str) -> String {
        format!("stock:fence:{sku}")
    }

    /// Hash: status, items (JSON), fingerprint, created_at, expires_at, settled_at, settled_by,
    /// and `short` (JSON sku, available pairs) once a paid order could not be fulfilled.
    pub fn reservation(id: &str) -> String {
        format!("{RESERVATION_PREFIX}{id}")
    }

    /// Hash: a customer's holdings (hoarding caps): `orders` (their RESERVED reservations) and
    /// `sku:<SKU>` (units of that product they hold). A customer id is restricted by the domain
    /// (`UserId`: `A-Z a-z 0-9 - _ . @ :`), so it is safe inside a key.
    pub fn holds(customer: &str) -> String {
        format!("stock:holds:{customer}")
    }

    /// Hash: sku, delta, reason, applied_at, and the levels right after the adjustment. One
    /// namespace for every SKU, so an id reused on another SKU is recognised as a reuse.
    pub fn adjustment(id: &str) -> String {
        format!("stock:adjustment:{id}")
    }

    /// Flash sales (shared with the compensator's reconciliation).
    pub use shop_adapter::flash::{
        sale, sale_buyers, sale_keys, sale_pending, ticket, SALES, SALE_ENDS, SALE_PREFIX,
        TICKET_PREFIX,
    };
}

pub use shop_adapter::redis::Script;

macro_rules! script {
    ($name:literal) => {
        $crate::redis::Script {
            name: $name,
            source: include_str!(concat!("lua/", $name, ".lua")),
        }
    };
    // A script composed with libraries (files of local functions) before it.
    ($name:literal after $($lib:literal),+) => {
        $crate::redis::Script {
            name: $name,
            source: concat!(
                $(include_str!(concat!("lua/", $lib, ".lua")), "\n",)+
                include_str!(concat!("lua/", $name, ".lua"))
            ),
        }
    };
}

/// `holdings.lua`, for scripts composed at run time (fulfil).
pub const HOLDINGS_LUA: &str = include_str!("lua/holdings.lua");

pub const LOCK_ACQUIRE: Script = script!("lock_acquire");
pub const LOCK_RELEASE: Script = script!("lock_release");
pub const PUT_PRODUCT: Script = script!("put_product");
pub const RESERVE: Script = script!("reserve");
pub const CONFIRM: Script = script!("confirm" after "holdings", "flash_units");
pub const RELEASE: Script = script!("release" after "holdings", "flash_units");
pub const EXPIRE: Script = script!("expire" after "clock", "holdings", "flash_units");
pub const HOLD: Script = script!("hold");
pub const ADJUST: Script = script!("adjust");
pub const PUT_SALE: Script = script!("put_sale");
pub const TICKET: Script = script!("ticket" after "clock", "flash_units");
pub const CLOSE_SALES: Script = script!("close_sales" after "clock");
pub const SALE_VIEW: Script = script!("sale_view");

/// An open connection to the stock Redis: the instance's one connection
/// (`shop_adapter::redis::connect`), shared with the customer token cache, so a purchase opens
/// one TCP connection, not two.
pub struct Store {
    conn: Rc<Connection>,
}

fn store_down(context: &str, err: impl std::fmt::Display) -> Problem {
    eprintln!("stock: redis {context}: {err}");
    Problem::unavailable("the stock store is unavailable, retry later")
}

impl Store {
    pub fn open() -> Result<Store, Problem> {
        let url = shop_adapter::vars::get("redis_url")
            .map_err(|e| Problem::internal("read variable redis_url", e))?;
        // The instance's one connection: the rate limiter's check shares it.
        let conn = shop_adapter::redis::connect(&url).map_err(|e| store_down("open", e))?;
        Ok(Store { conn })
    }

    /// Runs `script` (EVALSHA, EVAL on NOSCRIPT); returns its flat reply.
    pub fn run(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[&str],
    ) -> Result<Vec<String>, Problem> {
        shop_adapter::redis::run(&self.conn, script, keys, args)
            .map_err(|e| store_down(script.name, e))
    }

    /// HMGET of `fields` of the hash at `key`; `None` for a missing field.
    pub fn hmget(&self, key: &str, fields: &[&str]) -> Result<Vec<Option<String>>, Problem> {
        let mut params = vec![RedisParameter::Binary(key.as_bytes().to_vec())];
        params.extend(
            fields
                .iter()
                .map(|f| RedisParameter::Binary(f.as_bytes().to_vec())),
        );
        let reply = self
            .conn
            .execute("HMGET", &params)
            .map_err(|e| store_down("HMGET", e))?;
        Ok(reply
            .into_iter()
            .map(|r| match r {
                RedisResult::Nil => None,
                other => Some(shop_adapter::redis::text(other)),
            })
            .collect())
    }
}

/// A reply that does not have the shape the script promises: our bug, never the client's.
pub fn bad_reply(script: &Script, reply: &[String]) -> Problem {
    Problem::internal(
        "unexpected reply from a stock script",
        format!("{}: {reply:?}", script.name),
    )
}

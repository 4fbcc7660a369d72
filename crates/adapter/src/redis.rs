//! Lua scripts over Spin's outbound Redis, shared by every function that keeps state in Redis.
//!
//! Scripts run with EVALSHA and fall back to EVAL when Redis answers NOSCRIPT (after a restart or
//! `SCRIPT FLUSH`); EVAL also caches the script, so the next EVALSHA hits. A fresh component
//! instance serves each request, so nothing is cached on our side: the SHA-1 of a small script is
//! computed per call (microseconds), and EVALSHA then sends 40 bytes instead of the script.
//!
//! Every script returns a flat array of strings, never nested arrays: Spin's `execute` flattens
//! nested replies (spin v4.0.2 `factor-outbound-redis` `RedisResults::from_redis_value`), so a
//! flat array of bulk strings is the one shape that survives every host unchanged.

use std::cell::RefCell;
use std::rc::Rc;

use spin_sdk::redis::{Connection, Error, RedisParameter, RedisResult};

thread_local! {
    /// The connections this instance opened, by address (see [`connect`]).
    static OPEN: RefCell<Vec<(String, Rc<Connection>)>> = const { RefCell::new(Vec::new()) };
}

/// A connection to `url`, opened once per instance: every part of a request (the token cache,
/// the idempotency lease, the fast-path publish) shares it. Under Spin each `open` is a new TCP
/// connection and client handshake, about 0.14 ms of CPU measured under real Spin 4.0.2 (the
/// SQLite probe's `tx=redis` in docs/benchmarks.md), and an order took three. An instance
/// serves one request, so nothing outlives it.
pub fn connect(url: &str) -> Result<Rc<Connection>, Error> {
    if let Some(conn) =
        OPEN.with_borrow(|open| open.iter().find(|(u, _)| u == url).map(|(_, c)| c.clone()))
    {
        return Ok(conn);
    }
    let conn = Rc::new(Connection::open(url)?);
    OPEN.with_borrow_mut(|open| open.push((url.to_owned(), conn.clone())));
    Ok(conn)
}

/// A Lua script compiled into the component (`include_str!`).
pub struct Script {
    pub name: &'static str,
    pub source: &'static str,
}

/// One reply value as text (`""` for nil).
pub fn text(r: RedisResult) -> String {
    match r {
        RedisResult::Nil => String::new(),
        RedisResult::Status(s) => s,
        RedisResult::Int64(n) => n.to_string(),
        RedisResult::Binary(b) => String::from_utf8_lossy(&b).into_owned(),
    }
}

fn is_noscript(err: &Error) -> bool {
    let msg = format!("{err:?} {err}").to_ascii_lowercase();
    msg.contains("noscript") || msg.contains("no script") || msg.contains("no matching script")
}

/// Runs `script` with EVALSHA, falling back to EVAL on NOSCRIPT; returns its flat reply as text.
pub fn run(
    conn: &Connection,
    script: &Script,
    keys: &[&str],
    args: &[&str],
) -> Result<Vec<String>, Error> {
    let sha = sha1_smol::Sha1::from(script.source).hexdigest();
    let mut params = Vec::with_capacity(2 + keys.len() + args.len());
    params.push(RedisParameter::Binary(sha.into_bytes()));
    params.push(RedisParameter::Int64(keys.len() as i64));
    params.extend(
        keys.iter()
            .chain(args)
            .map(|s| RedisParameter::Binary(s.as_bytes().to_vec())),
    );
    let reply = match conn.execute("EVALSHA", &params) {
        Err(e) if is_noscript(&e) => {
            params[0] = RedisParameter::Binary(script.source.as_bytes().to_vec());
            conn.execute("EVAL", &params)
        }
        other => other,
    }?;
    Ok(reply.into_iter().map(text).collect())
}

//! Outbound Redis (Spin's `factor-outbound-redis`): `fermyon:spin/redis@2.0.0`.
//!
//! `open(address)` succeeds only for addresses granted in `allowed_outbound_hosts`
//! (`redis://host:port`); anything else gets `invalid-address`, as in Spin. Connections are
//! reused across requests: one reconnecting multiplexed connection per address, shared by every
//! instance (Spin opens one per `open`, which costs a TCP + HELLO round trip per request). Commands
//! that put connection-scoped state on the server (`SELECT`, `MULTI`, `WATCH`, `CLIENT`, ...)
//! switch that guest connection to a private connection first, so no guest can observe another's
//! connection state.
//!
//! `execute` maps every reply to `redis-result` values the way Spin does (arrays are flattened,
//! `OK` is `status("OK")`, doubles and big numbers are `binary`, booleans are `int64`), so Lua
//! scripts through `EVAL` / `EVALSHA` work.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use redis::aio::MultiplexedConnection;
use redis::{AsyncCommands, Value};
use wasmtime::component::{HasSelf, Linker, Resource};

use crate::bindings::fermyon::spin2_0_0::redis as v2;
use crate::outbound_networking::AllowedHosts;
use crate::state::InstanceState;

/// Idle time after which a pooled connection is checked with `PING` before it is handed out.
const IDLE_CHECK: Duration = Duration::from_millis(100);

/// A multiplexed connection shared by every guest using one address.
///
/// It is marked dead when a command on it fails with a connection error, and re-validated with
/// a `PING` when it has been idle for a while, so a Redis restart between requests is never seen
/// by the next guest (only requests in flight at the time of the restart can fail).
#[derive(Clone)]
struct Pooled {
    conn: MultiplexedConnection,
    alive: Arc<AtomicBool>,
    last_used: Instant,
}

/// Connects with bounded timeouts (a guest waits at most a few seconds for an unreachable server).
pub async fn connect(client: &redis::Client) -> redis::RedisResult<MultiplexedConnection> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(3)))
        .set_response_timeout(Some(Duration::from_secs(30)));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// Shared connections by address.
#[derive(Default)]
pub struct RedisPool {
    conns: tokio::sync::Mutex<HashMap<String, Pooled>>,
}

/// A connection handed out by the pool, with the flag to clear if it turns out broken.
#[derive(Clone)]
pub struct Lease {
    /// The connection.
    pub conn: MultiplexedConnection,
    alive: Arc<AtomicBool>,
}

impl Lease {
    /// Records a failed command: connection-level failures retire the shared connection. So
    /// does a protocol error, after which the server closes the connection (as it does for an
    /// unauthenticated client's long command): the next command would only meet a broken pipe.
    pub fn note(&self, e: &redis::RedisError) {
        let protocol = e.to_string().contains("Protocol error");
        if e.is_connection_dropped() || e.is_io_error() || e.is_timeout() || protocol {
            self.alive.store(false, Ordering::Release);
        }
    }
}

impl RedisPool {
    /// A live shared connection for `address`, (re)connecting when needed.
    pub async fn get(&self, address: &str) -> redis::RedisResult<Lease> {
        let mut conns = self.conns.lock().await;
        if let Some(p) = conns.get_mut(address) {
            let mut usable = p.alive.load(Ordering::Acquire);
            if usable && p.last_used.elapsed() > IDLE_CHECK {
                let mut conn = p.conn.clone();
                let ping = tokio::time::timeout(
                    Duration::from_secs(2),
                    redis::cmd("PING").query_async::<()>(&mut conn),
                )
                .await;
                usable = matches!(ping, Ok(Ok(())));
            }
            if usable {
                p.last_used = Instant::now();
                return Ok(Lease {
                    conn: p.conn.clone(),
                    alive: p.alive.clone(),
                });
            }
        }
        let client = redis::Client::open(address)?;
        let conn = connect(&client).await?;
        let p = Pooled {
            conn: conn.clone(),
            alive: Arc::new(AtomicBool::new(true)),
            last_used: Instant::now(),
        };
        let lease = Lease {
            conn,
            alive: p.alive.clone(),
        };
        conns.insert(address.to_string(), p);
        Ok(lease)
    }
}

/// A guest connection.
pub struct RedisConnection {
    address: String,
    lease: Lease,
    private: bool,
}

fn other(e: impl std::fmt::Display) -> v2::Error {
    v2::Error::Other(e.to_string())
}

/// Maps a command's Redis error to the interface error, first letting the lease retire its
/// connection when the failure was connection-level (every command does both, in that order).
fn noted<T>(
    lease: &Lease,
    result: redis::RedisResult<T>,
    map: fn(redis::RedisError) -> v2::Error,
) -> std::result::Result<T, v2::Error> {
    result.map_err(|e| {
        lease.note(&e);
        map(e)
    })
}

fn type_or_other(e: redis::RedisError) -> v2::Error {
    if e.kind() == redis::ErrorKind::UnexpectedReturnType {
        v2::Error::TypeError
    } else {
        v2::Error::Other(e.to_string())
    }
}

/// Commands that leave connection-scoped state on the server.
fn is_stateful(command: &str) -> bool {
    matches!(
        command.to_ascii_uppercase().as_str(),
        "SELECT"
            | "MULTI"
            | "EXEC"
            | "DISCARD"
            | "WATCH"
            | "UNWATCH"
            | "CLIENT"
            | "AUTH"
            | "HELLO"
            | "SUBSCRIBE"
            | "PSUBSCRIBE"
            | "SSUBSCRIBE"
            | "READONLY"
            | "READWRITE"
            | "RESET"
    )
}

/// Flattens a reply into Spin's `redis-result` list.
pub fn flatten(value: Value, out: &mut Vec<v2::RedisResult>) -> std::result::Result<(), v2::Error> {
    match value {
        Value::Nil => out.push(v2::RedisResult::Nil),
        Value::Int(i) => out.push(v2::RedisResult::Int64(i)),
        Value::BulkString(b) => out.push(v2::RedisResult::Binary(b)),
        Value::SimpleString(s) => out.push(v2::RedisResult::Status(s)),
        Value::Okay => out.push(v2::RedisResult::Status("OK".to_string())),
        Value::Array(a) | Value::Set(a) => {
            for v in a {
                flatten(v, out)?;
            }
        }
        Value::Double(d) => out.push(v2::RedisResult::Binary(d.to_string().into_bytes())),
        Value::Boolean(b) => out.push(v2::RedisResult::Int64(i64::from(b))),
        Value::BigNumber(n) => out.push(v2::RedisResult::Binary(format!("{n:?}").into_bytes())),
        Value::Map(_) => return Err(v2::Error::Other("Redis Map type is not supported".into())),
        Value::Attribute { .. } => {
            return Err(v2::Error::Other(
                "Redis Attribute type is not supported".into(),
            ))
        }
        Value::VerbatimString { .. } => {
            return Err(v2::Error::Other(
                "Redis string with format attribute is not supported".into(),
            ))
        }
        other => {
            return Err(v2::Error::Other(format!(
                "unsupported Redis reply {other:?}"
            )))
        }
    }
    Ok(())
}

/// Links the interface.
pub fn add_to_linker(linker: &mut Linker<InstanceState>) -> Result<()> {
    v2::add_to_linker::<_, HasSelf<InstanceState>>(linker, |s| s)?;
    Ok(())
}

/// One instance's outbound Redis state: the app's shared connections and the component's grants.
pub struct RedisInstance {
    pool: Arc<RedisPool>,
    allowed_hosts: Arc<AllowedHosts>,
}

impl RedisInstance {
    /// State for an instance of a component holding `allowed_hosts`.
    pub fn new(pool: Arc<RedisPool>, allowed_hosts: Arc<AllowedHosts>) -> Self {
        RedisInstance {
            pool,
            allowed_hosts,
        }
    }
}

impl InstanceState {
    fn redis_conn(&self, r: &Resource<RedisConnection>) -> wasmtime::Result<Lease> {
        Ok(self.table.get(r)?.lease.clone())
    }
}

impl v2::Host for InstanceState {}

impl v2::HostConnection for InstanceState {
    async fn open(
        &mut self,
        address: String,
    ) -> wasmtime::Result<std::result::Result<Resource<RedisConnection>, v2::Error>> {
        if !self.redis.allowed_hosts.allows_url(&address, "redis") {
            return Ok(Err(v2::Error::InvalidAddress));
        }
        if redis::Client::open(address.as_str()).is_err() {
            return Ok(Err(v2::Error::InvalidAddress));
        }
        let lease = match self.redis.pool.get(&address).await {
            Ok(c) => c,
            Err(e) => return Ok(Err(other(e))),
        };
        Ok(Ok(self.table.push(RedisConnection {
            address,
            lease,
            private: false,
        })?))
    }

    async fn publish(
        &mut self,
        c: Resource<RedisConnection>,
        channel: String,
        payload: Vec<u8>,
    ) -> wasmtime::Result<std::result::Result<(), v2::Error>> {
        let lease = self.redis_conn(&c)?;
        let mut conn = lease.conn.clone();
        Ok(noted(
            &lease,
            conn.publish::<_, _, ()>(&channel, &payload).await,
            other,
        ))
    }

    async fn get(
        &mut self,
        c: Resource<RedisConnection>,
        key: String,
    ) -> wasmtime::Result<std::result::Result<Option<Vec<u8>>, v2::Error>> {
        let lease = self.redis_conn(&c)?;
        let mut conn = lease.conn.clone();
        Ok(noted(
            &lease,
            conn.get::<_, Option<Vec<u8>>>(&key).await,
            other,
        ))
    }

    async fn set(
        &mut self,
        c: Resource<RedisConnection>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<std::result::Result<(), v2::Error>> {
        let lease = self.redis_conn(&c)?;
        let mut conn = lease.conn.clone();
        Ok(noted(
            &lease,
            conn.set::<_, _, ()>(&key, &value).await,
            other,
        ))
    }

    async fn incr(
        &mut self,
        c: Resource<RedisConnection>,
        key: String,
    ) -> wasmtime::Result<std::result::Result<i64, v2::Error>> {
        let lease = self.redis_conn(&c)?;
        let mut conn = lease.conn.clone();
        Ok(noted(&lease, conn.incr::<_, _, i64>(&key, 1).await, other))
    }

    async fn del(
        &mut self,
        c: Resource<RedisConnection>,
        keys: Vec<String>,
    ) -> wasmtime::Result<std::result::Result<u32, v2::Error>> {
        let lease = self.redis_conn(&c)?;
        let mut conn = lease.conn.clone();
        Ok(noted(&lease, conn.del::<_, u32>(&keys).await, other))
    }

    async fn sadd(
        &mut self,
        c: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> wasmtime::Result<std::result::Result<u32, v2::Error>> {
        let lease = self.redis_conn(&c)?;
        let mut conn = lease.conn.clone();
        Ok(noted(
            &lease,
            conn.sadd::<_, _, u32>(&key, &values).await,
            type_or_other,
        ))
    }

    async fn smembers(
        &mut self,
        c: Resource<RedisConnection>,
        key: String,
    ) -> wasmtime::Result<std::result::Result<Vec<String>, v2::Error>> {
        let lease = self.redis_conn(&c)?;
        let mut conn = lease.conn.clone();
        Ok(noted(
            &lease,
            conn.smembers::<_, Vec<String>>(&key).await,
            other,
        ))
    }

    async fn srem(
        &mut self,
        c: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> wasmtime::Result<std::result::Result<u32, v2::Error>> {
        let lease = self.redis_conn(&c)?;
        let mut conn = lease.conn.clone();
        Ok(noted(
            &lease,
            conn.srem::<_, _, u32>(&key, &values).await,
            other,
        ))
    }

    async fn execute(
        &mut self,
        c: Resource<RedisConnection>,
        command: String,
        arguments: Vec<v2::RedisParameter>,
    ) -> wasmtime::Result<std::result::Result<Vec<v2::RedisResult>, v2::Error>> {
        if is_stateful(&command) && !self.table.get(&c)?.private {
            let address = self.table.get(&c)?.address.clone();
            let client = match redis::Client::open(address.as_str()) {
                Ok(client) => client,
                Err(_) => return Ok(Err(v2::Error::InvalidAddress)),
            };
            match connect(&client).await {
                Ok(private) => {
                    let entry = self.table.get_mut(&c)?;
                    entry.lease = Lease {
                        conn: private,
                        alive: Arc::new(AtomicBool::new(true)),
                    };
                    entry.private = true;
                }
                Err(e) => return Ok(Err(other(e))),
            }
        }
        let lease = self.redis_conn(&c)?;
        let mut conn = lease.conn.clone();
        let mut cmd = redis::cmd(&command);
        for a in arguments {
            match a {
                v2::RedisParameter::Int64(i) => {
                    cmd.arg(i);
                }
                v2::RedisParameter::Binary(b) => {
                    cmd.arg(b);
                }
            }
        }
        let value: Value = match cmd.query_async(&mut conn).await {
            Ok(v) => v,
            Err(e) => {
                lease.note(&e);
                return Ok(Err(other(e)));
            }
        };
        let mut out = Vec::new();
        Ok(flatten(value, &mut out).map(|()| out))
    }

    async fn drop(&mut self, c: Resource<RedisConnection>) -> wasmtime::Result<()> {
        self.table.delete(c)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattening_matches_spin() {
        let mut out = Vec::new();
        flatten(
            Value::Array(vec![
                Value::Int(1),
                Value::Nil,
                Value::Okay,
                Value::BulkString(b"x".to_vec()),
                Value::Array(vec![Value::SimpleString("PONG".into())]),
                Value::Boolean(true),
            ]),
            &mut out,
        )
        .expect("flatten");
        let expected = vec![
            v2::RedisResult::Int64(1),
            v2::RedisResult::Nil,
            v2::RedisResult::Status("OK".into()),
            v2::RedisResult::Binary(b"x".to_vec()),
            v2::RedisResult::Status("PONG".into()),
            v2::RedisResult::Int64(1),
        ];
        assert_eq!(format!("{out:?}"), format!("{expected:?}"));
        assert!(flatten(Value::Map(vec![]), &mut Vec::new()).is_err());
    }

    #[test]
    fn stateful_commands() {
        assert!(is_stateful("multi"));
        assert!(is_stateful("SELECT"));
        assert!(!is_stateful("EVAL"));
        assert!(!is_stateful("GET"));
    }
}

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
//! Unlike Spin 4.0.2 (redis-rs with no connect or response timeout), an unreachable server costs
//! a guest little: connecting times out after [`CONNECT_TIMEOUT`], a reply after
//! [`RESPONSE_TIMEOUT`], concurrent opens of one address share one connect attempt, and after
//! an attempt timed out opens fail at once for [`RETRY_AFTER`] (docs/architecture.md, "When
//! Redis does not answer").
//!
//! `execute` maps every reply to `redis-result` values the way Spin does (arrays are flattened,
//! `OK` is `status("OK")`, doubles and big numbers are `binary`, booleans are `int64`), so Lua
//! scripts through `EVAL` / `EVALSHA` work.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use futures::future::{BoxFuture, FutureExt, Shared};
use redis::aio::MultiplexedConnection;
use redis::{AsyncCommands, Value};
use wasmtime::component::{HasSelf, Linker, Resource};

use crate::bindings::fermyon::spin2_0_0::redis as v2;
use crate::outbound_networking::AllowedHosts;
use crate::state::InstanceState;

/// Idle time after which a pooled connection is checked with `PING` before it is handed out.
const IDLE_CHECK: Duration = Duration::from_millis(100);
/// How long that `PING` may take: a server that answers nothing in this time is presumed gone.
const PING_TIMEOUT: Duration = Duration::from_millis(500);
/// How long connecting may take, TCP connect and the client's setup round trip together: Redis
/// sits next to the app (same host, cluster or zone), where a connect takes milliseconds.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one command may wait for its reply. The app's commands and scripts take
/// milliseconds; a reply this late means a stalled server, and the guest gets an error.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// After a connect attempt timed out, opens of that address fail at once for this long instead
/// of each waiting out another [`CONNECT_TIMEOUT`]. A refused connect costs nothing and is
/// retried by the next open, so a restarted server is used as soon as it is back.
pub const RETRY_AFTER: Duration = Duration::from_secs(2);

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

impl Pooled {
    fn lease(&self) -> Lease {
        Lease {
            conn: self.conn.clone(),
            alive: self.alive.clone(),
        }
    }
}

/// Connects with bounded timeouts (a guest waits at most [`CONNECT_TIMEOUT`] for an unreachable
/// server, [`RESPONSE_TIMEOUT`] for a reply).
pub async fn connect(client: &redis::Client) -> redis::RedisResult<MultiplexedConnection> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT));
    // Our own bound too: it covers DNS and the setup round trip whatever the client counts.
    match tokio::time::timeout(
        CONNECT_TIMEOUT,
        client.get_multiplexed_async_connection_with_config(&config),
    )
    .await
    {
        Ok(result) => result,
        Err(_) => Err(timed_out(format!(
            "Redis connect timed out after {CONNECT_TIMEOUT:?}"
        ))),
    }
}

fn timed_out(message: String) -> redis::RedisError {
    std::io::Error::new(std::io::ErrorKind::TimedOut, message).into()
}

/// One connect attempt, awaited by every caller that needs the address meanwhile.
type Attempt = Shared<BoxFuture<'static, std::result::Result<Pooled, Failure>>>;

/// Why an attempt failed, shareable between its waiters.
#[derive(Clone)]
struct Failure {
    message: String,
    timed_out: bool,
}

impl Failure {
    fn error(&self) -> redis::RedisError {
        let kind = match self.timed_out {
            true => std::io::ErrorKind::TimedOut,
            false => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, self.message.clone()).into()
    }
}

/// Where one address stands.
enum Slot {
    /// The connection guests share.
    Live(Pooled),
    /// A connect in flight (`id` tells it from a later one).
    Connecting { id: u64, attempt: Attempt },
    /// The last connect timed out at `at`: opens fail at once until [`RETRY_AFTER`].
    Failed { at: Instant, failure: Failure },
}

/// Shared connections by address.
///
/// The map's lock is held only to read or replace a slot, never across a `PING` or a connect:
/// callers needing an address that is being connected to all await the same attempt, so N
/// concurrent requests against an unreachable server wait one [`CONNECT_TIMEOUT`], not N.
#[derive(Default)]
pub struct RedisPool {
    slots: Mutex<HashMap<String, Slot>>,
    attempts: AtomicU64,
}

/// What a caller does next, decided under the lock and done outside it.
enum Step {
    Ready(Lease),
    Check(Pooled),
    Await { id: u64, attempt: Attempt },
    Fail(redis::RedisError),
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
        // A connection that fails its check is retired; the second round connects anew.
        for _ in 0..2 {
            match self.next_step(address)? {
                Step::Ready(lease) => return Ok(lease),
                Step::Fail(e) => return Err(e),
                Step::Check(pooled) => {
                    if ping(&pooled.conn).await {
                        self.touch(address, &pooled);
                        return Ok(pooled.lease());
                    }
                    pooled.alive.store(false, Ordering::Release);
                }
                Step::Await { id, attempt } => {
                    let outcome = attempt.await;
                    self.settle(address, id, &outcome);
                    return outcome.map(|p| p.lease()).map_err(|f| f.error());
                }
            }
        }
        Err(timed_out(format!(
            "Redis at {address} did not answer PING within {PING_TIMEOUT:?}"
        )))
    }

    /// Decides, under the lock, what getting `address` takes now.
    fn next_step(&self, address: &str) -> redis::RedisResult<Step> {
        let mut slots = self.lock()?;
        let step = match slots.get_mut(address) {
            Some(Slot::Live(p)) if p.alive.load(Ordering::Acquire) => {
                if p.last_used.elapsed() <= IDLE_CHECK {
                    p.last_used = Instant::now();
                    Step::Ready(p.lease())
                } else {
                    Step::Check(p.clone())
                }
            }
            Some(Slot::Connecting { id, attempt }) => Step::Await {
                id: *id,
                attempt: attempt.clone(),
            },
            Some(Slot::Failed { at, failure }) if at.elapsed() < RETRY_AFTER => {
                Step::Fail(failure.error())
            }
            _ => {
                let id = self.attempts.fetch_add(1, Ordering::Relaxed);
                let attempt = start_attempt(address.to_owned());
                slots.insert(
                    address.to_owned(),
                    Slot::Connecting {
                        id,
                        attempt: attempt.clone(),
                    },
                );
                Step::Await { id, attempt }
            }
        };
        Ok(step)
    }

    /// Records how attempt `id` ended, unless the slot has moved on since.
    fn settle(&self, address: &str, id: u64, outcome: &std::result::Result<Pooled, Failure>) {
        let Ok(mut slots) = self.lock() else { return };
        let current =
            matches!(slots.get(address), Some(Slot::Connecting { id: c, .. }) if *c == id);
        if !current {
            return;
        }
        match outcome {
            Ok(p) => {
                slots.insert(address.to_owned(), Slot::Live(p.clone()));
            }
            // A slow failure is remembered, so the next callers do not wait it out again.
            Err(f) if f.timed_out => {
                let failed = Slot::Failed {
                    at: Instant::now(),
                    failure: f.clone(),
                };
                slots.insert(address.to_owned(), failed);
            }
            Err(_) => {
                slots.remove(address);
            }
        }
    }

    /// Marks the shared connection behind `pooled` as just used, if it is still the pool's.
    fn touch(&self, address: &str, pooled: &Pooled) {
        if let Ok(mut slots) = self.lock() {
            if let Some(Slot::Live(p)) = slots.get_mut(address) {
                if Arc::ptr_eq(&p.alive, &pooled.alive) {
                    p.last_used = Instant::now();
                }
            }
        }
    }

    fn lock(&self) -> redis::RedisResult<std::sync::MutexGuard<'_, HashMap<String, Slot>>> {
        self.slots.lock().map_err(|_| {
            redis::RedisError::from((
                redis::ErrorKind::Client,
                "Redis connection pool poisoned",
                String::new(),
            ))
        })
    }
}

/// Whether the server answers a `PING` on `conn` within [`PING_TIMEOUT`].
async fn ping(conn: &MultiplexedConnection) -> bool {
    let mut conn = conn.clone();
    let cmd = redis::cmd("PING");
    let ping = cmd.query_async::<()>(&mut conn);
    matches!(tokio::time::timeout(PING_TIMEOUT, ping).await, Ok(Ok(())))
}

/// A connect to `address` that callers can share.
fn start_attempt(address: String) -> Attempt {
    async move {
        let client = redis::Client::open(address.as_str()).map_err(|e| Failure {
            message: e.to_string(),
            timed_out: false,
        })?;
        let conn = connect(&client).await.map_err(|e| Failure {
            message: e.to_string(),
            timed_out: e.is_timeout(),
        })?;
        Ok::<_, Failure>(Pooled {
            conn,
            alive: Arc::new(AtomicBool::new(true)),
            last_used: Instant::now(),
        })
    }
    .boxed()
    .shared()
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

    /// A server that accepts connections and never answers (a blackholed Redis), counting them.
    async fn blackhole() -> (String, Arc<AtomicU64>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = format!("redis://{}", listener.local_addr().expect("addr"));
        let accepted = Arc::new(AtomicU64::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                held.push(socket);
            }
        });
        (address, accepted)
    }

    /// Fifty concurrent opens of a blackholed address share one connect attempt: all fail after
    /// about one connect timeout (before, each waited its turn under the pool's lock: 50 x 3 s),
    /// and an open right after fails at once without connecting again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_opens_of_a_blackholed_server_wait_one_connect_timeout() {
        let (address, accepted) = blackhole().await;
        let pool = Arc::new(RedisPool::default());
        let started = Instant::now();
        let opens = (0..50).map(|_| {
            let (pool, address) = (pool.clone(), address.clone());
            tokio::spawn(async move { pool.get(&address).await.map(|_| ()) })
        });
        let outcomes = futures::future::join_all(opens).await;
        let took = started.elapsed();
        for outcome in outcomes {
            let err = outcome
                .expect("task")
                .expect_err("a blackholed server never connects");
            assert!(err.is_timeout(), "{err}");
        }
        assert!(took < CONNECT_TIMEOUT * 10, "50 opens took {took:?}");
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "one connect attempt");

        let again = Instant::now();
        let err = pool
            .get(&address)
            .await
            .map(|_| ())
            .expect_err("still down");
        assert!(err.is_timeout(), "{err}");
        assert!(
            again.elapsed() < CONNECT_TIMEOUT / 2,
            "{:?}",
            again.elapsed()
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "no new attempt yet");
    }

    #[test]
    fn stateful_commands() {
        assert!(is_stateful("multi"));
        assert!(is_stateful("SELECT"));
        assert!(!is_stateful("EVAL"));
        assert!(!is_stateful("GET"));
    }
}

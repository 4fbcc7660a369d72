//! Key-value stores (Spin's `factor-key-value`, `key-value-spin`, `key-value-redis`):
//! `fermyon:spin/key-value@2.0.0` and `wasi:keyvalue/{store,atomics,batch}@0.2.0-draft2`.
//!
//! Backends:
//! - `spin`: a SQLite file with Spin's schema (`spin_key_value(store, key, value)`), one shared
//!   connection per file (as Spin does), so a store written by `spin up` reads the same here;
//!   `increment` stores the counter as 8 little-endian bytes, like Spin.
//! - `redis`: a Redis server, through a reconnecting connection shared by every instance.
//!
//! Grants: a component may open only the labels in its `key_value_stores` (`access-denied`
//! otherwise; undeclared labels are rejected at start-up, as in Spin).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use redis::AsyncCommands;
use rusqlite::{params, Connection, OptionalExtension};
use wasmtime::component::{HasSelf, Linker, Resource};

use crate::bindings::fermyon::spin2_0_0::key_value as v2;
use crate::bindings::wasi::keyvalue::{atomics, batch, store as wasi_store};
use crate::capability::ConfigureAppContext;
use crate::runtime_config::{KvStoreConfig, RuntimeConfig};
use crate::state::InstanceState;

/// Store errors before mapping to an interface's error type.
#[derive(Debug)]
pub enum KvError {
    /// Label not defined.
    NoSuchStore,
    /// Label not granted.
    AccessDenied,
    /// Backend error.
    Other(String),
}

impl From<KvError> for v2::Error {
    fn from(e: KvError) -> Self {
        match e {
            KvError::NoSuchStore => v2::Error::NoSuchStore,
            KvError::AccessDenied => v2::Error::AccessDenied,
            KvError::Other(m) => v2::Error::Other(m),
        }
    }
}

impl From<KvError> for wasi_store::Error {
    fn from(e: KvError) -> Self {
        match e {
            KvError::NoSuchStore => wasi_store::Error::NoSuchStore,
            KvError::AccessDenied => wasi_store::Error::AccessDenied,
            KvError::Other(m) => wasi_store::Error::Other(m),
        }
    }
}

fn other(e: impl std::fmt::Display) -> KvError {
    KvError::Other(e.to_string())
}

type KvResult<T> = std::result::Result<T, KvError>;

/// A SQLite-backed store file, shared by every label using it.
pub struct SqliteKv {
    conn: Mutex<Connection>,
}

impl SqliteKv {
    fn open(path: Option<&Path>) -> Result<SqliteKv> {
        let conn = match path {
            Some(p) => {
                if let Some(parent) = p.parent() {
                    std::fs::create_dir_all(parent)
                        .with_context(|| format!("cannot create {}", parent.display()))?;
                }
                Connection::open(p)
                    .with_context(|| format!("cannot open key-value store {}", p.display()))?
            }
            None => Connection::open_in_memory()?,
        };
        conn.busy_handler(Some(crate::sqlite::busy_wait))?;
        // WAL lets a second host process (or `spin up`) read while we write; durability as for
        // SQLite databases (see `sqlite::synchronous_pragma`).
        let _: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        conn.execute_batch(crate::sqlite::synchronous_pragma())?;
        conn.execute(
            "CREATE TABLE IF NOT EXISTS spin_key_value (
                store TEXT NOT NULL,
                key   TEXT NOT NULL,
                value BLOB NOT NULL,
                PRIMARY KEY (store, key)
            )",
            [],
        )?;
        Ok(SqliteKv {
            conn: Mutex::new(conn),
        })
    }

    /// Runs `f` on the connection without stalling the async runtime.
    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> KvResult<T> {
        tokio::task::block_in_place(|| {
            let mut conn = self
                .conn
                .lock()
                .map_err(|_| KvError::Other("store lock poisoned".into()))?;
            f(&mut conn).map_err(other)
        })
    }
}

/// A Redis-backed store.
pub struct RedisKv {
    url: String,
    pool: crate::redis::RedisPool,
}

impl RedisKv {
    async fn conn(&self) -> KvResult<redis::aio::MultiplexedConnection> {
        self.pool
            .get(&self.url)
            .await
            .map(|l| l.conn)
            .map_err(other)
    }
}

/// A backend.
pub enum Backend {
    /// SQLite.
    Sqlite(SqliteKv),
    /// Redis.
    Redis(RedisKv),
}

/// Lua: compare-and-swap (ARGV[1] = "1" if an old value is expected, ARGV[2] old, ARGV[3] new).
const CAS_SCRIPT: &str = r#"
local cur = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if cur == false or cur ~= ARGV[2] then return 0 end
else
  if cur ~= false then return 0 end
end
redis.call('SET', KEYS[1], ARGV[3])
return 1
"#;

/// One open store: a backend plus the store name (label) used as a namespace.
pub struct KvStore {
    name: String,
    backend: Arc<Backend>,
}

/// A `wasi:keyvalue/atomics.cas` handle: the value seen when it was made.
pub struct KvCas {
    name: String,
    backend: Arc<Backend>,
    key: String,
    current: Option<Vec<u8>>,
}

impl KvStore {
    fn redis_key(&self, key: &str) -> String {
        // Each label has its own Redis server URL in Spin, so keys are not namespaced.
        key.to_string()
    }

    async fn get(&self, key: &str) -> KvResult<Option<Vec<u8>>> {
        match &*self.backend {
            Backend::Sqlite(s) => s.with(|c| {
                c.prepare_cached("SELECT value FROM spin_key_value WHERE store=?1 AND key=?2")?
                    .query_row(params![self.name, key], |r| r.get::<_, Vec<u8>>(0))
                    .optional()
            }),
            Backend::Redis(r) => r
                .conn()
                .await?
                .get(self.redis_key(key))
                .await
                .map_err(other),
        }
    }

    async fn set(&self, key: &str, value: &[u8]) -> KvResult<()> {
        match &*self.backend {
            Backend::Sqlite(s) => s.with(|c| {
                c.prepare_cached(
                    "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
                     ON CONFLICT(store, key) DO UPDATE SET value=?3",
                )?
                .execute(params![self.name, key, value])
                .map(drop)
            }),
            Backend::Redis(r) => r
                .conn()
                .await?
                .set(self.redis_key(key), value)
                .await
                .map_err(other),
        }
    }

    async fn delete(&self, key: &str) -> KvResult<()> {
        match &*self.backend {
            Backend::Sqlite(s) => s.with(|c| {
                c.prepare_cached("DELETE FROM spin_key_value WHERE store=?1 AND key=?2")?
                    .execute(params![self.name, key])
                    .map(drop)
            }),
            Backend::Redis(r) => r
                .conn()
                .await?
                .del(self.redis_key(key))
                .await
                .map_err(other),
        }
    }

    async fn exists(&self, key: &str) -> KvResult<bool> {
        match &*self.backend {
            Backend::Sqlite(s) => s.with(|c| {
                c.prepare_cached("SELECT 1 FROM spin_key_value WHERE store=?1 AND key=?2")?
                    .query_row(params![self.name, key], |_| Ok(()))
                    .optional()
                    .map(|o| o.is_some())
            }),
            Backend::Redis(r) => r
                .conn()
                .await?
                .exists(self.redis_key(key))
                .await
                .map_err(other),
        }
    }

    async fn keys(&self) -> KvResult<Vec<String>> {
        match &*self.backend {
            Backend::Sqlite(s) => s.with(|c| {
                let mut stmt = c.prepare_cached("SELECT key FROM spin_key_value WHERE store=?1")?;
                let rows = stmt.query_map(params![self.name], |r| r.get::<_, String>(0))?;
                rows.collect()
            }),
            Backend::Redis(r) => r.conn().await?.keys("*").await.map_err(other),
        }
    }

    async fn get_many(&self, keys: Vec<String>) -> KvResult<Vec<(String, Option<Vec<u8>>)>> {
        match &*self.backend {
            Backend::Sqlite(s) => s.with(|c| {
                let mut stmt =
                    c.prepare_cached("SELECT value FROM spin_key_value WHERE store=?1 AND key=?2")?;
                let mut out = Vec::new();
                for k in keys {
                    let v = stmt
                        .query_row(params![self.name, k], |r| r.get::<_, Vec<u8>>(0))
                        .optional()?;
                    // Spin returns only the keys that exist.
                    if v.is_some() {
                        out.push((k, v));
                    }
                }
                Ok(out)
            }),
            Backend::Redis(r) => {
                if keys.is_empty() {
                    return Ok(Vec::new());
                }
                let values: Vec<Option<Vec<u8>>> =
                    r.conn().await?.mget(&keys).await.map_err(other)?;
                Ok(keys
                    .into_iter()
                    .zip(values)
                    .filter(|(_, v)| v.is_some())
                    .collect())
            }
        }
    }

    async fn set_many(&self, kvs: Vec<(String, Vec<u8>)>) -> KvResult<()> {
        match &*self.backend {
            Backend::Sqlite(s) => s.with(|c| {
                let tx = c.transaction()?;
                {
                    let mut stmt = tx.prepare_cached(
                        "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
                         ON CONFLICT(store, key) DO UPDATE SET value=?3",
                    )?;
                    for (k, v) in &kvs {
                        stmt.execute(params![self.name, k, v])?;
                    }
                }
                tx.commit()
            }),
            Backend::Redis(r) => {
                if kvs.is_empty() {
                    return Ok(());
                }
                r.conn().await?.mset(&kvs).await.map_err(other)
            }
        }
    }

    async fn delete_many(&self, keys: Vec<String>) -> KvResult<()> {
        match &*self.backend {
            Backend::Sqlite(s) => s.with(|c| {
                let tx = c.transaction()?;
                {
                    let mut stmt =
                        tx.prepare_cached("DELETE FROM spin_key_value WHERE store=?1 AND key=?2")?;
                    for k in &keys {
                        stmt.execute(params![self.name, k])?;
                    }
                }
                tx.commit()
            }),
            Backend::Redis(r) => {
                if keys.is_empty() {
                    return Ok(());
                }
                r.conn().await?.del(&keys).await.map_err(other)
            }
        }
    }

    async fn increment(&self, key: &str, delta: i64) -> KvResult<i64> {
        match &*self.backend {
            Backend::Sqlite(s) => {
                let r = s.with(|c| {
                    let tx = c.transaction()?;
                    let cur: Option<Vec<u8>> = tx
                        .prepare_cached(
                            "SELECT value FROM spin_key_value WHERE store=?1 AND key=?2",
                        )?
                        .query_row(params![self.name, key], |r| r.get(0))
                        .optional()?;
                    let n = match cur {
                        None => Ok(0i64),
                        Some(v) => match <[u8; 8]>::try_from(v.as_slice()) {
                            Ok(b) => Ok(i64::from_le_bytes(b)),
                            Err(_) => Err(format!("value of {key:?} is not an 8-byte integer")),
                        },
                    };
                    let n = match n {
                        Ok(n) => n,
                        Err(m) => return Ok(Err(m)),
                    };
                    let Some(new) = n.checked_add(delta) else {
                        return Ok(Err("increment overflows".to_string()));
                    };
                    tx.prepare_cached(
                        "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
                         ON CONFLICT(store, key) DO UPDATE SET value=?3",
                    )?
                    .execute(params![
                        self.name,
                        key,
                        new.to_le_bytes().to_vec()
                    ])?;
                    tx.commit()?;
                    Ok(Ok(new))
                })?;
                r.map_err(KvError::Other)
            }
            Backend::Redis(r) => r
                .conn()
                .await?
                .incr(self.redis_key(key), delta)
                .await
                .map_err(other),
        }
    }

    async fn swap(&self, key: &str, expected: &Option<Vec<u8>>, new: &[u8]) -> KvResult<bool> {
        match &*self.backend {
            Backend::Sqlite(s) => s.with(|c| {
                let tx = c.transaction()?;
                let cur: Option<Vec<u8>> = tx
                    .prepare_cached("SELECT value FROM spin_key_value WHERE store=?1 AND key=?2")?
                    .query_row(params![self.name, key], |r| r.get(0))
                    .optional()?;
                if &cur != expected {
                    return Ok(false);
                }
                tx.prepare_cached(
                    "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
                     ON CONFLICT(store, key) DO UPDATE SET value=?3",
                )?
                .execute(params![self.name, key, new])?;
                tx.commit()?;
                Ok(true)
            }),
            Backend::Redis(r) => {
                let mut conn = r.conn().await?;
                let (flag, old): (&str, &[u8]) = match expected {
                    Some(v) => ("1", v.as_slice()),
                    None => ("0", b""),
                };
                let done: i64 = redis::Script::new(CAS_SCRIPT)
                    .key(self.redis_key(key))
                    .arg(flag)
                    .arg(old)
                    .arg(new)
                    .invoke_async(&mut conn)
                    .await
                    .map_err(other)?;
                Ok(done == 1)
            }
        }
    }
}

/// Checks every component's `key_value_stores` against the stores the runtime config defines
/// (reporting every undefined label at once) and returns the labels each component may open.
pub fn configure_app(ctx: &ConfigureAppContext<'_>) -> Result<HashMap<String, Arc<[String]>>> {
    ctx.per_component(|id, c| {
        let mut problems = crate::capability::Problems::default();
        for label in &c.key_value_stores {
            if !ctx.runtime_config.has_kv_store(label) {
                problems.push(anyhow::anyhow!("component {id:?} uses key-value store {label:?}, which is not defined: only \"default\" exists unless a runtime config file declares [key_value_store.{label}]"));
            }
        }
        problems.finish_with(c.key_value_stores.as_slice().into())
    })
}

/// Every configured store, shared by all instances.
pub struct KvService {
    backends: HashMap<String, Arc<Backend>>,
}

impl KvService {
    /// Opens the configured stores (SQLite files are created now, Redis connects lazily).
    pub fn new(state_dir: &Path, rc: &RuntimeConfig) -> Result<KvService> {
        let mut backends = HashMap::new();
        let mut files: HashMap<std::path::PathBuf, Arc<Backend>> = HashMap::new();
        for (label, cfg) in rc.kv_stores(state_dir) {
            let backend = match cfg {
                KvStoreConfig::Spin { path: Some(p) } => {
                    if let Some(b) = files.get(&p) {
                        b.clone()
                    } else {
                        let b = Arc::new(Backend::Sqlite(
                            SqliteKv::open(Some(&p))
                                .with_context(|| format!("key-value store {label:?}"))?,
                        ));
                        files.insert(p, b.clone());
                        b
                    }
                }
                KvStoreConfig::Spin { path: None } => {
                    Arc::new(Backend::Sqlite(SqliteKv::open(None)?))
                }
                KvStoreConfig::Redis { url } => {
                    redis::Client::open(url.as_str())
                        .with_context(|| format!("key-value store {label:?}: invalid Redis URL"))?;
                    Arc::new(Backend::Redis(RedisKv {
                        url,
                        pool: crate::redis::RedisPool::default(),
                    }))
                }
            };
            backends.insert(label, backend);
        }
        Ok(KvService { backends })
    }
}

/// One instance's key-value state: the app's stores and the labels this component may open.
pub struct KvInstance {
    service: Arc<KvService>,
    allowed: Arc<[String]>,
}

impl KvInstance {
    /// State for an instance of a component granted `allowed` (its `key_value_stores`).
    pub fn new(service: Arc<KvService>, allowed: Arc<[String]>) -> Self {
        KvInstance { service, allowed }
    }

    fn open(&self, label: &str) -> KvResult<KvStore> {
        if !self.allowed.iter().any(|l| l == label) {
            return Err(KvError::AccessDenied);
        }
        let backend = self
            .service
            .backends
            .get(label)
            .ok_or(KvError::NoSuchStore)?;
        Ok(KvStore {
            name: label.to_string(),
            backend: backend.clone(),
        })
    }
}

/// Links both key-value interface families.
pub fn add_to_linker(linker: &mut Linker<InstanceState>) -> Result<()> {
    type D = HasSelf<InstanceState>;
    v2::add_to_linker::<_, D>(linker, |s| s)?;
    wasi_store::add_to_linker::<_, D>(linker, |s| s)?;
    atomics::add_to_linker::<_, D>(linker, |s| s)?;
    batch::add_to_linker::<_, D>(linker, |s| s)?;
    Ok(())
}

fn store_of<'a>(state: &'a InstanceState, r: &Resource<KvStore>) -> wasmtime::Result<&'a KvStore> {
    Ok(state.table.get(r)?)
}

fn clone_store(state: &InstanceState, r: &Resource<KvStore>) -> wasmtime::Result<KvStore> {
    let s = store_of(state, r)?;
    Ok(KvStore {
        name: s.name.clone(),
        backend: s.backend.clone(),
    })
}

/// `open` for both interface families: the label check and the table push are the same, only
/// the interface's error type differs.
fn open_store<E: From<KvError>>(
    state: &mut InstanceState,
    label: &str,
) -> wasmtime::Result<std::result::Result<Resource<KvStore>, E>> {
    match state.key_value.open(label) {
        Ok(store) => Ok(Ok(state.table.push(store)?)),
        Err(e) => Ok(Err(e.into())),
    }
}

/// The `get`/`set`/`delete`/`exists` methods, identical in `fermyon:spin/key-value` and
/// `wasi:keyvalue/store` except for the error type (`$err`), which both convert from
/// [`KvError`]. One macro keeps the two families from drifting apart.
macro_rules! kv_store_methods {
    ($err:ty) => {
        async fn get(
            &mut self,
            s: Resource<KvStore>,
            key: String,
        ) -> wasmtime::Result<std::result::Result<Option<Vec<u8>>, $err>> {
            let store = clone_store(self, &s)?;
            Ok(store.get(&key).await.map_err(Into::into))
        }

        async fn set(
            &mut self,
            s: Resource<KvStore>,
            key: String,
            value: Vec<u8>,
        ) -> wasmtime::Result<std::result::Result<(), $err>> {
            let store = clone_store(self, &s)?;
            Ok(store.set(&key, &value).await.map_err(Into::into))
        }

        async fn delete(
            &mut self,
            s: Resource<KvStore>,
            key: String,
        ) -> wasmtime::Result<std::result::Result<(), $err>> {
            let store = clone_store(self, &s)?;
            Ok(store.delete(&key).await.map_err(Into::into))
        }

        async fn exists(
            &mut self,
            s: Resource<KvStore>,
            key: String,
        ) -> wasmtime::Result<std::result::Result<bool, $err>> {
            let store = clone_store(self, &s)?;
            Ok(store.exists(&key).await.map_err(Into::into))
        }
    };
}

// ---- fermyon:spin/key-value@2.0.0

impl v2::Host for InstanceState {}

impl v2::HostStore for InstanceState {
    async fn open(
        &mut self,
        label: String,
    ) -> wasmtime::Result<std::result::Result<Resource<KvStore>, v2::Error>> {
        open_store(self, &label)
    }

    kv_store_methods!(v2::Error);

    async fn get_keys(
        &mut self,
        s: Resource<KvStore>,
    ) -> wasmtime::Result<std::result::Result<Vec<String>, v2::Error>> {
        let store = clone_store(self, &s)?;
        Ok(store.keys().await.map_err(Into::into))
    }

    async fn drop(&mut self, s: Resource<KvStore>) -> wasmtime::Result<()> {
        self.table.delete(s)?;
        Ok(())
    }
}

// ---- wasi:keyvalue@0.2.0-draft2

impl wasi_store::Host for InstanceState {
    async fn open(
        &mut self,
        identifier: String,
    ) -> wasmtime::Result<std::result::Result<Resource<KvStore>, wasi_store::Error>> {
        open_store(self, &identifier)
    }
}

impl wasi_store::HostBucket for InstanceState {
    kv_store_methods!(wasi_store::Error);

    async fn list_keys(
        &mut self,
        s: Resource<KvStore>,
        cursor: Option<String>,
    ) -> wasmtime::Result<std::result::Result<wasi_store::KeyResponse, wasi_store::Error>> {
        if cursor.is_some() {
            return Ok(Err(wasi_store::Error::Other(
                "list_keys: cursor not supported".to_string(),
            )));
        }
        let store = clone_store(self, &s)?;
        Ok(store
            .keys()
            .await
            .map(|keys| wasi_store::KeyResponse { keys, cursor: None })
            .map_err(Into::into))
    }

    async fn drop(&mut self, s: Resource<KvStore>) -> wasmtime::Result<()> {
        self.table.delete(s)?;
        Ok(())
    }
}

impl batch::Host for InstanceState {
    async fn get_many(
        &mut self,
        s: Resource<KvStore>,
        keys: Vec<String>,
    ) -> wasmtime::Result<std::result::Result<Vec<(String, Option<Vec<u8>>)>, wasi_store::Error>>
    {
        let store = clone_store(self, &s)?;
        Ok(store.get_many(keys).await.map_err(Into::into))
    }

    async fn set_many(
        &mut self,
        s: Resource<KvStore>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> wasmtime::Result<std::result::Result<(), wasi_store::Error>> {
        let store = clone_store(self, &s)?;
        Ok(store.set_many(key_values).await.map_err(Into::into))
    }

    async fn delete_many(
        &mut self,
        s: Resource<KvStore>,
        keys: Vec<String>,
    ) -> wasmtime::Result<std::result::Result<(), wasi_store::Error>> {
        let store = clone_store(self, &s)?;
        Ok(store.delete_many(keys).await.map_err(Into::into))
    }
}

impl atomics::Host for InstanceState {
    async fn increment(
        &mut self,
        s: Resource<KvStore>,
        key: String,
        delta: i64,
    ) -> wasmtime::Result<std::result::Result<i64, wasi_store::Error>> {
        let store = clone_store(self, &s)?;
        Ok(store.increment(&key, delta).await.map_err(Into::into))
    }

    async fn swap(
        &mut self,
        cas: Resource<KvCas>,
        value: Vec<u8>,
    ) -> wasmtime::Result<std::result::Result<(), atomics::CasError>> {
        let c = self.table.delete(cas)?;
        let store = KvStore {
            name: c.name.clone(),
            backend: c.backend.clone(),
        };
        match store.swap(&c.key, &c.current, &value).await {
            Ok(true) => Ok(Ok(())),
            Ok(false) => {
                let current = match store.get(&c.key).await {
                    Ok(v) => v,
                    Err(e) => return Ok(Err(atomics::CasError::StoreError(e.into()))),
                };
                let fresh = self.table.push(KvCas {
                    name: c.name,
                    backend: c.backend,
                    key: c.key,
                    current,
                })?;
                Ok(Err(atomics::CasError::CasFailed(fresh)))
            }
            Err(e) => Ok(Err(atomics::CasError::StoreError(e.into()))),
        }
    }
}

impl atomics::HostCas for InstanceState {
    async fn new(
        &mut self,
        bucket: Resource<KvStore>,
        key: String,
    ) -> wasmtime::Result<std::result::Result<Resource<KvCas>, wasi_store::Error>> {
        let store = clone_store(self, &bucket)?;
        let current = match store.get(&key).await {
            Ok(v) => v,
            Err(e) => return Ok(Err(e.into())),
        };
        Ok(Ok(self.table.push(KvCas {
            name: store.name,
            backend: store.backend,
            key,
            current,
        })?))
    }

    async fn current(
        &mut self,
        cas: Resource<KvCas>,
    ) -> wasmtime::Result<std::result::Result<Option<Vec<u8>>, wasi_store::Error>> {
        Ok(Ok(self.table.get(&cas)?.current.clone()))
    }

    async fn drop(&mut self, cas: Resource<KvCas>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}

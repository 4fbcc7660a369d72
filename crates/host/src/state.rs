//! Per-instance state: the `T` of every `wasmtime::Store<T>`.
//!
//! A fresh `InstanceState` (and `Store`) is made for every request, message or cron tick, so
//! nothing a guest does leaks into the next call. It holds the WASI and wasi-http contexts, the
//! shared resource table every capability stores its guest resources in, and each capability's
//! per-instance state (as Spin's factors build theirs): the component's grants and resolved
//! variables, and `Arc`s to the app's shared services (stores, databases, connection pools).

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::key_value::KvInstance;
use crate::outbound_http::OutboundHttpHooks;
use crate::outbound_networking::AllowedHosts;
use crate::redis::RedisInstance;
use crate::sqlite::SqliteInstance;
use crate::variables::SharedComponentVariables;

/// The trigger that made an instance. Outbound HTTP depends on it, as in Spin, where only the
/// HTTP trigger sets a self-request origin and the service-chaining interceptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerKind {
    /// `[[trigger.http]]`, including a chained request.
    Http,
    /// `[[trigger.redis]]`.
    Redis,
    /// `[[trigger.cron]]`.
    Cron,
}

impl TriggerKind {
    /// The trigger type as written in the manifest (`[[trigger.<type>]]`).
    pub fn name(self) -> &'static str {
        match self {
            TriggerKind::Http => "http",
            TriggerKind::Redis => "redis",
            TriggerKind::Cron => "cron",
        }
    }
}

/// Store data for one guest instance.
pub struct InstanceState {
    /// Guest resources of every interface (WASI, wasi-http, key-value, SQLite, Redis).
    pub table: ResourceTable,
    /// WASI context (stdio, env, clocks, random).
    pub wasi: WasiCtx,
    /// wasi-http context.
    pub http: WasiHttpCtx,
    /// Outbound HTTP policy: grants, self-requests and service chaining (HTTP trigger only).
    pub hooks: OutboundHttpHooks,
    /// The trigger this instance serves.
    pub trigger: TriggerKind,
    /// The component's resolved `allowed_outbound_hosts` (sockets, MQTT, databases).
    pub allowed_hosts: Arc<AllowedHosts>,
    /// The component's resolved variables.
    pub variables: SharedComponentVariables,
    /// Key-value stores the component may open.
    pub key_value: KvInstance,
    /// SQLite databases the component may open.
    pub sqlite: SqliteInstance,
    /// Outbound Redis.
    pub redis: RedisInstance,
    /// The memory limit, enforced by wasmtime through this limiter.
    pub limits: crate::limits::InstanceLimiter,
    /// When the instance's run time limit ends it, if it has one.
    pub deadline: Option<std::time::Instant>,
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for InstanceState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

//! Per-instance state: the `T` of every `wasmtime::Store<T>`.
//!
//! A fresh `InstanceState` (and `Store`) is made for every request, message or cron tick, so
//! nothing a guest does leaks into the next call. It holds the WASI and wasi-http contexts, the
//! shared resource table every capability stores its guest resources in, and `Arc`s to the
//! component's start-up configuration and to the app's shared services (connection pools).

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::outbound_http::OutboundHttpHooks;
use crate::runtime::{AppRuntime, ComponentRuntime};

/// Store data for one guest instance.
pub struct InstanceState {
    /// Guest resources of every interface (WASI, wasi-http, key-value, SQLite, Redis).
    pub table: ResourceTable,
    /// WASI context (stdio, env, clocks, random).
    pub wasi: WasiCtx,
    /// wasi-http context.
    pub http: WasiHttpCtx,
    /// Outbound HTTP policy: grants, service chaining.
    pub hooks: OutboundHttpHooks,
    /// The component's start-up configuration (variables, grants, labels).
    pub component: Arc<ComponentRuntime>,
    /// The app: other components (service chaining) and shared services.
    pub app: Arc<AppRuntime>,
    /// Resource limits enforced by wasmtime.
    pub limits: wasmtime::StoreLimits,
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

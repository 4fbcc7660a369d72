//! Host bindings generated from the WIT in `crates/host/wit` (copied from spin-sdk 5.2.0).
//!
//! Every import is `async` (Redis and the HTTP-backed stores are async; SQLite runs on the
//! blocking pool) and `trappable` (a host bug traps the guest instead of returning a guest error).
//! Resources map to this crate's own types so they live in the store's shared `ResourceTable`,
//! next to wasmtime-wasi's and wasmtime-wasi-http's resources.

#![allow(missing_docs, clippy::all)]

wasmtime::component::bindgen!({
    path: "wit",
    world: "spin-host:host/imports",
    imports: { default: async | trappable },
    with: {
        "fermyon:spin/key-value@2.0.0.store": crate::key_value::KvStore,
        "wasi:keyvalue/store@0.2.0-draft2.bucket": crate::key_value::KvStore,
        "wasi:keyvalue/atomics@0.2.0-draft2.cas": crate::key_value::KvCas,
        "fermyon:spin/sqlite@2.0.0.connection": crate::sqlite::SqliteConnection,
        "spin:sqlite/sqlite@3.0.0.connection": crate::sqlite::SqliteConnection,
        "fermyon:spin/redis@2.0.0.connection": crate::redis::RedisConnection,
        "fermyon:spin/mqtt@2.0.0.connection": crate::unsupported::Unsupported,
        "fermyon:spin/postgres@2.0.0.connection": crate::unsupported::Unsupported,
        "fermyon:spin/mysql@2.0.0.connection": crate::unsupported::Unsupported,
        "spin:postgres/postgres@3.0.0.connection": crate::unsupported::Unsupported,
        "spin:postgres/postgres@4.0.0.connection": crate::unsupported::Unsupported,
    },
});

/// The Redis trigger's export: `fermyon:spin/inbound-redis` (unversioned, as spin-sdk exports it).
pub mod redis_trigger {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "spin-host:host/redis-trigger",
        exports: { default: async },
    });
}

/// The cron trigger's export: `handle-cron-event` of `fermyon:spin-cron/spin-cron@2.0.0`.
pub mod cron_trigger {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "fermyon:spin-cron/spin-cron@2.0.0",
        exports: { default: async },
    });
}

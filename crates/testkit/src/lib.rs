//! Test support: real parts, no mocks.
//!
//! - [`RedisServer`] starts a private `redis-server` on a free loopback port and stops it by PID
//!   when dropped, so no test ever touches a Redis on the standard port.
//! - [`SpinApp`] runs `spin-host up` as a subprocess on a manifest, waits until it serves, and
//!   kills it when dropped. Its stdout/stderr are kept for assertions and failure messages.
//! - [`Response`] is what the tiny HTTP helpers return: status, headers and body, whatever the
//!   status (4xx and 5xx are data here, not errors).

mod app;
mod http;
mod paths;
mod redis;

pub use app::{SpinApp, SpinAppBuilder};
pub use http::{request, Response};
pub use paths::{free_port, host_bin, repo_root, wasm};
pub use redis::RedisServer;

/// The real Spin CLI to run apps under, if this machine has one: `SPIN_BIN`, else `spin` on the
/// PATH. Tests that need it report themselves skipped (with this reason) when it is `None`.
pub fn spin_cli() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("SPIN_BIN").filter(|p| !p.is_empty()) {
        return Some(p.into());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("spin"))
            .find(|p| p.is_file())
    })
}

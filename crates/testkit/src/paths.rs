//! Where the built artifacts are. Tests never build them: `scripts/test.sh` builds the wasm
//! components and the host first, and a missing artifact is a loud failure naming the command.

use std::net::TcpListener;
use std::path::PathBuf;

/// The repository root (this crate lives in `crates/testkit`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repo root exists")
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| {
            if p.is_absolute() {
                p
            } else {
                repo_root().join(p)
            }
        })
        .unwrap_or_else(|| repo_root().join("target"))
}

/// The release `spin-host` binary (override with `SPIN_HOST_BIN`).
pub fn host_bin() -> PathBuf {
    let path = std::env::var_os("SPIN_HOST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("release/spin-host"));
    assert!(
        path.exists(),
        "{} is missing: run ./scripts/test.sh (or `cargo build --release -p spin-host`) first",
        path.display()
    );
    path
}

/// A wasm component built by `scripts/build-wasm.sh`, by crate file name (e.g. `payment_callback`).
pub fn wasm(name: &str) -> PathBuf {
    let path = target_dir().join(format!("wasm32-wasip2/release/{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run ./scripts/build-wasm.sh (./scripts/test.sh does) first",
        path.display()
    );
    path
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral loopback port")
}

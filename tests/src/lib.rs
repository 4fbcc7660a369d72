//! What every end-to-end test needs: the real `spin.toml` booted in the host against a private
//! redis-server and a private state dir (SQLite files), plus problem+json assertions.
//!
//! Each [`Shop`] is its own world: its own Redis on a free loopback port, its own `--state-dir`,
//! its own host process. Dropping it stops the host, then Redis (by PID), then deletes the state.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use testkit::{repo_root, RedisServer, Response, SpinApp};

/// The admin bearer token every e2e app is started with.
pub const ADMIN_TOKEN: &str = "e2e-admin-token";
/// The payment webhook secret every e2e app is started with.
pub const WEBHOOK_SECRET: &str = "e2e-webhook-secret";

/// The five components the real manifest needs; a missing one fails loudly before booting.
const COMPONENTS: [&str; 5] = [
    "order",
    "stock",
    "coupon",
    "payment_callback",
    "compensator",
];

pub struct Shop {
    // Declaration order is drop order: stop the host before its Redis and its state.
    pub app: SpinApp,
    pub redis: RedisServer,
    pub state: tempfile::TempDir,
}

impl Shop {
    /// Boots the real `spin.toml` with the e2e variables. Panics with the host's output if it
    /// does not come up: every test needs it.
    pub fn boot() -> Shop {
        Self::boot_with(|b| b)
    }

    /// The real `spin.toml` with one change: the compensator's cron never fires during the test
    /// (`0 0 0 1 1 *`, once a year). For tests that drive the repair routes themselves and assert
    /// what one call did: a cron tick landing between their setup and their call would do the
    /// work first. Everything else (components, routes, grants, variables) is the real manifest.
    pub fn boot_without_cron() -> Shop {
        Self::boot_manifest(Manifest::WithoutCron, |b| b)
    }

    /// As [`Shop::boot`], letting the caller add variables or arguments to the host.
    pub fn boot_with(
        configure: impl FnOnce(testkit::SpinAppBuilder) -> testkit::SpinAppBuilder,
    ) -> Shop {
        Self::boot_manifest(Manifest::Real, configure)
    }

    fn boot_manifest(
        manifest: Manifest,
        configure: impl FnOnce(testkit::SpinAppBuilder) -> testkit::SpinAppBuilder,
    ) -> Shop {
        for c in COMPONENTS {
            testkit::wasm(c);
        }
        let redis = RedisServer::start().expect("start redis-server");
        let state = tempfile::Builder::new()
            .prefix("spin-shop-e2e-")
            .tempdir()
            .expect("state dir");
        let manifest = match manifest {
            Manifest::Real => repo_root().join("spin.toml"),
            Manifest::WithoutCron => without_cron(state.path()),
        };
        let builder = SpinApp::builder(manifest)
            .state_dir(state.path())
            .variable("redis_host", redis.host())
            .variable("admin_token", ADMIN_TOKEN)
            .variable("payment_webhook_secret", WEBHOOK_SECRET)
            .startup_timeout(Duration::from_secs(180));
        let app = configure(builder)
            .start()
            .unwrap_or_else(|e| panic!("the real spin.toml did not start: {e:#}"));
        Shop { app, redis, state }
    }

    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }

    /// The app's default SQLite database (Spin's `sqlite_db.db` in the state dir).
    pub fn db_path(&self) -> PathBuf {
        self.state.path().join("sqlite_db.db")
    }

    /// Rows of `query` on the app's default SQLite database, read with the sqlite3 CLI as an
    /// operator would, as JSON objects.
    pub fn sql(&self, query: &str) -> Vec<Value> {
        let out = std::process::Command::new("sqlite3")
            .arg("-json")
            .arg(self.db_path())
            .arg(query)
            .output()
            .expect("run sqlite3 (apt-get install -y sqlite3)");
        assert!(
            out.status.success(),
            "sqlite3 {query}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        if text.trim().is_empty() {
            return Vec::new();
        }
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("sqlite3 output {text}: {e}"))
    }

    /// `PUT /api/products/{sku}` as the admin.
    pub fn put_product(&self, sku: &str, body: &Value) -> Response {
        let (k, v) = admin_auth();
        self.app
            .send_json("PUT", &format!("/api/products/{sku}"), &[(k, &v)], body)
            .expect("PUT product")
    }
}

enum Manifest {
    Real,
    WithoutCron,
}

/// Writes a copy of the real `spin.toml` into `dir` whose cron expressions fire once a year and
/// whose component sources are absolute paths to the built `.wasm` files.
fn without_cron(dir: &Path) -> PathBuf {
    let real = std::fs::read_to_string(repo_root().join("spin.toml")).expect("read spin.toml");
    let mut crons = 0;
    let copy: Vec<String> = real
        .lines()
        .map(|line| {
            if line.trim_start().starts_with("cron_expression") {
                crons += 1;
                "cron_expression = \"0 0 0 1 1 *\"".to_owned()
            } else if let Some(rest) = line.strip_prefix("source = \"target/wasm32-wasip2/release/")
            {
                let file = rest.trim_end_matches('"').trim_end_matches(".wasm");
                format!("source = {:?}", testkit::wasm(file).display().to_string())
            } else {
                line.to_owned()
            }
        })
        .collect();
    assert!(crons > 0, "spin.toml has no cron trigger to silence");
    let path = dir.join("spin-without-cron.toml");
    std::fs::write(&path, copy.join("\n")).expect("write manifest copy");
    path
}

/// The `authorization` header of the admin.
pub fn admin_auth() -> (&'static str, String) {
    ("authorization", format!("Bearer {ADMIN_TOKEN}"))
}

/// Asserts `resp` is an RFC 9457 problem with `status` (and `field`, when given); returns it.
pub fn assert_problem(resp: &Response, status: u16, field: Option<&str>) -> Value {
    assert_eq!(resp.status, status, "expected {status}: {}", resp.text());
    assert_eq!(
        resp.header("content-type"),
        Some("application/problem+json"),
        "{}",
        resp.text()
    );
    let body = resp.json();
    assert_eq!(body["status"], status, "{body}");
    for member in ["type", "title", "detail"] {
        assert!(body[member].is_string(), "problem without {member}: {body}");
    }
    if let Some(f) = field {
        assert_eq!(body["field"], f, "{body}");
    }
    body
}

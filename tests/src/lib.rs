//! What every end-to-end test needs: the real `spin.toml` booted in the host against a private
//! redis-server and a private state dir (SQLite files), plus problem+json assertions.
//!
//! Each [`Shop`] is its own world: its own Redis on a free loopback port, its own `--state-dir`,
//! its own host process. Dropping it stops the host, then Redis (by PID), then deletes the state.

pub mod provider;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use shop_domain::shard::ShardCount;
use testkit::{repo_root, RedisServer, Response, SpinApp};

/// The admin bearer token every e2e app is started with.
pub const ADMIN_TOKEN: &str = "e2e-admin-token";
/// The internal service token every e2e app is started with.
pub const INTERNAL_TOKEN: &str = "e2e-internal-token";
/// The payment webhook secret every e2e app is started with.
pub const WEBHOOK_SECRET: &str = "e2e-webhook-secret";
/// The fake payment provider every e2e boot refunds at unless the test sets its own
/// (`payment_api_base`): no test ever calls the real provider.
pub fn default_provider() -> &'static provider::FakeProvider {
    static PROVIDER: std::sync::OnceLock<provider::FakeProvider> = std::sync::OnceLock::new();
    PROVIDER.get_or_init(provider::FakeProvider::start)
}

/// The payment provider's secret key the e2e boots set (the fake provider checks it).
pub const PAYMENT_SECRET_KEY: &str = "sk_test_e2e";
/// The issuer and audience of the e2e app's customer tokens (not spin.toml's defaults, so the
/// variables are proven to reach the component).
pub const AUTH_ISSUER: &str = "https://id.e2e.spin-shop.test";
pub const AUTH_AUDIENCE: &str = "spin-shop-e2e";

/// The test identity provider's keys, generated once per test process and never written
/// anywhere: an ES256 key (`kid` `e2e-es256`, signs [`customer_token`]) and an RS256 key
/// (`e2e-rs256`). Both are in the JWKS every e2e app is started with ([`test_jwks`]).
pub struct TestKeys {
    pub es256: devtools::DevKey,
    pub rs256: devtools::DevKey,
}

pub fn test_keys() -> &'static TestKeys {
    static KEYS: std::sync::OnceLock<TestKeys> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| TestKeys {
        es256: devtools::DevKey::generate_es256(Some("e2e-es256")).expect("ES256 key"),
        rs256: devtools::DevKey::generate_rs256(Some("e2e-rs256")).expect("RS256 key"),
    })
}

/// The `auth_jwks` of every e2e app: both test keys.
pub fn test_jwks() -> String {
    let k = test_keys();
    devtools::jwks(&[&k.es256, &k.rs256])
}

/// The claims of a valid customer token for `user` (one hour).
pub fn customer_claims(user: &str) -> Value {
    devtools::claims(AUTH_ISSUER, AUTH_AUDIENCE, user, 3600)
}

/// A valid ES256 customer token for `user`.
pub fn customer_token(user: &str) -> String {
    test_keys()
        .es256
        .sign(&customer_claims(user))
        .expect("sign")
}

/// The `authorization` header of customer `user`.
pub fn customer_auth(user: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {}", customer_token(user)))
}

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
    /// The app's `order_shards` ([`ORDER_SHARDS`] unless a test set the variable; a test that
    /// does sets this too, so the shard helpers below find the right files).
    pub order_shards: u32,
}

/// A well-formed order id no order has.
pub const NO_ORDER: &str = "ord_00000000000000000000000000000000";

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

    /// The real manifests under the real Spin CLI ([`testkit::spin_cli`]: `SPIN_BIN` or `spin`
    /// on the PATH; `./scripts/test.sh` installs it from `../shared/spin` when that exists and
    /// says so when it cannot), started the way docs/deploy.md tells users to:
    /// `./scripts/up.sh --spin` (the HTTP app, and the receivers under the supervisor), with the
    /// e2e variables, Redis and state dir. Without a CLI the caller is told why it is skipped (on
    /// stderr, and `None`), so the test reports the skip instead of passing as if it had run;
    /// with `CI` set, a missing CLI fails the test instead: CI must not go green without it.
    pub fn boot_real_spin() -> Option<Shop> {
        Self::boot_real_spin_with(|b| b)
    }

    /// As [`Shop::boot_real_spin`], letting the caller set variables.
    pub fn boot_real_spin_with(
        configure: impl FnOnce(testkit::SpinAppBuilder) -> testkit::SpinAppBuilder,
    ) -> Option<Shop> {
        let Some(spin) = testkit::spin_cli() else {
            let why = "no Spin CLI (set SPIN_BIN, e.g. from ../shared/spin/install.sh, or put `spin` on the PATH)";
            assert!(
                !ci(),
                "CI is set and there is {why}: the real-Spin tests cannot be skipped in CI"
            );
            eprintln!("SKIPPED: {why}");
            return None;
        };
        let up = repo_root().join("scripts/up.sh");
        Some(Self::boot_manifest(Manifest::Launched, |b| {
            configure(
                b.launcher(up, &["--spin", "--no-build"])
                    .env("SPIN_BIN", spin.display().to_string()),
            )
        }))
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
        let redis = RedisServer::start().expect("start redis-server");
        Self::boot_manifest_on(manifest, redis, configure)
    }

    /// The real manifests (cron silenced) against a durable Redis (append-only file, fsync on
    /// every write: [`RedisServer::start_durable`]), for tests that crash and restart it.
    pub fn boot_on_durable_redis() -> Shop {
        let redis = RedisServer::start_durable().expect("start a durable redis-server");
        Self::boot_manifest_on(Manifest::WithoutCron, redis, |b| b)
    }

    fn boot_manifest_on(
        manifest: Manifest,
        redis: RedisServer,
        configure: impl FnOnce(testkit::SpinAppBuilder) -> testkit::SpinAppBuilder,
    ) -> Shop {
        for c in COMPONENTS {
            testkit::wasm(c);
        }
        let state = tempfile::Builder::new()
            .prefix("spin-shop-e2e-")
            .tempdir()
            .expect("state dir");
        let app = start_app(manifest, &redis, state.path(), configure);
        Shop {
            app,
            redis,
            state,
            order_shards: ORDER_SHARDS,
        }
    }

    /// The real manifests (cron silenced) with `order_shards` set to `shards`.
    pub fn boot_with_shards(shards: u32) -> Shop {
        let n = shards.to_string();
        let mut shop =
            Self::boot_manifest(Manifest::WithoutCron, |b| b.variable("order_shards", &n));
        shop.order_shards = shards;
        shop
    }

    /// Stops the app, runs `offline` on the state dir while nothing runs (an operator's step,
    /// e.g. `spin-shop-dev reshard`), then starts the real manifests (cron silenced) again on the
    /// same Redis and state with `order_shards` set to `shards`.
    pub fn restart_with_shards(self, shards: u32, offline: impl FnOnce(&Path)) -> Shop {
        let Shop {
            app, redis, state, ..
        } = self;
        app.stop();
        offline(state.path());
        let n = shards.to_string();
        let app = start_app(Manifest::WithoutCron, &redis, state.path(), |b| {
            b.variable("order_shards", &n)
        });
        Shop {
            app,
            redis,
            state,
            order_shards: shards,
        }
    }

    /// The real HTTP app (`spin.toml`) with silenced cron, without the receivers' app
    /// (`spin.receivers.toml`: `order-events`, `stock-events`): as if it were not deployed or
    /// down. Their messages wait in the streams; [`Shop::restart_without_cron`] brings them back.
    pub fn boot_without_receivers() -> Shop {
        Self::boot_without_receivers_with(|b| b)
    }

    /// As [`Shop::boot_without_receivers`], letting the caller set variables: every delivery
    /// is the test's own call of a receiver's drain route.
    pub fn boot_without_receivers_with(
        configure: impl FnOnce(testkit::SpinAppBuilder) -> testkit::SpinAppBuilder,
    ) -> Shop {
        Self::boot_manifest(Manifest::WithoutReceivers, configure)
    }

    /// Stops the app and starts the real manifest (cron silenced) again on the same Redis and
    /// state dir, as after a redeploy.
    pub fn restart_without_cron(&mut self) {
        self.restart_without_cron_with(|b| b);
    }

    /// As [`Shop::restart_without_cron`], letting the caller change variables (e.g. rotate the
    /// identity provider's keys).
    pub fn restart_without_cron_with(
        &mut self,
        configure: impl FnOnce(testkit::SpinAppBuilder) -> testkit::SpinAppBuilder,
    ) {
        let placeholder = start_app(
            Manifest::WithoutCron,
            &self.redis,
            self.state.path(),
            configure,
        );
        let old = std::mem::replace(&mut self.app, placeholder);
        old.stop();
    }

    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }

    /// The SQLite file of a context's label (see [`runtime_config`]).
    pub fn db_file(&self, label: &str) -> PathBuf {
        self.state.path().join(format!("{label}.db"))
    }

    /// The shard holding customer `user`'s orders (the order component's own hash,
    /// `shop_domain::shard`, over [`Shop::order_shards`]).
    pub fn shard_of(&self, user: &str) -> u32 {
        self.shard_count().shard_of(user).get()
    }

    fn shard_count(&self) -> ShardCount {
        ShardCount::new(self.order_shards).expect("order_shards in 1..=8")
    }

    /// The SQLite file of shard `k` of the order context (label `orders-shard<k>`).
    pub fn shard_file(&self, k: u32) -> PathBuf {
        self.db_file(&shard_label(k))
    }

    /// The file of the shard holding customer `user`'s orders: the one whose write lock their
    /// order requests take.
    pub fn shard_file_of(&self, user: &str) -> PathBuf {
        self.shard_file(self.shard_of(user))
    }

    /// Rows of `query` on the order context's database, read with the sqlite3 CLI as an operator
    /// would, as JSON objects, over every shard: a read (`SELECT`, `WITH`) sees each table as the
    /// union of its rows in all shards (so `COUNT(*)` counts them all); any other statement
    /// (`UPDATE`, `DELETE`, `CREATE TRIGGER`, ...) runs in each shard. An `INSERT` belongs to
    /// one shard: [`Shop::sql_for`]. The shards are migrated first if one is not yet.
    pub fn sql(&self, query: &str) -> Vec<Value> {
        let first = query.trim_start().to_ascii_uppercase();
        assert!(
            !first.starts_with("INSERT"),
            "an INSERT goes to one shard: use sql_for(customer, ..): {query}"
        );
        let tables = self.shard_tables();
        if first.starts_with("SELECT") || first.starts_with("WITH") {
            return self.sql_over_shards(&tables, query);
        }
        (0..self.order_shards)
            .flat_map(|k| self.sql_in(&shard_label(k), query))
            .collect()
    }

    /// Rows of `query` on the shard holding customer `user`'s orders.
    pub fn sql_for(&self, user: &str, query: &str) -> Vec<Value> {
        self.sql_in(&shard_label(self.shard_of(user)), query)
    }

    /// Each shard's tables (by index), every shard migrated first (an admin read visits all).
    fn shard_tables(&self) -> Vec<Vec<String>> {
        let list = |k: u32| -> Vec<String> {
            if !self.shard_file(k).exists() {
                return Vec::new();
            }
            let q =
                "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'";
            let rows = self.sql_in(&shard_label(k), q);
            rows.iter()
                .filter_map(|r| r["name"].as_str().map(str::to_owned))
                .collect()
        };
        let migrated = |t: &Vec<String>| t.iter().any(|n| n == "shard_layout");
        let tables: Vec<Vec<String>> = (0..self.order_shards).map(list).collect();
        if tables.iter().all(migrated) {
            return tables;
        }
        self.migrate_orders();
        (0..self.order_shards).map(list).collect()
    }

    /// `query` in one sqlite3 session that attaches every shard and names each table as a
    /// view over all of them.
    fn sql_over_shards(&self, tables: &[Vec<String>], query: &str) -> Vec<Value> {
        let mut script = String::new();
        for k in 0..self.order_shards {
            let file = self.shard_file(k).display().to_string();
            script += &format!("ATTACH '{}' AS s{k};\n", file.replace('\'', "''"));
        }
        for table in &tables[0] {
            let parts: Vec<String> = (0..self.order_shards)
                .map(|k| format!("SELECT * FROM s{k}.\"{table}\""))
                .collect();
            script += &format!(
                "CREATE TEMP VIEW \"{table}\" AS {};\n",
                parts.join(" UNION ALL ")
            );
        }
        script += query;
        sqlite3_json(Path::new(":memory:"), &script)
    }

    /// Rows of `query` on the database of `label`.
    pub fn sql_in(&self, label: &str, query: &str) -> Vec<Value> {
        sqlite3_json(&self.db_file(label), query)
    }

    /// `PUT /api/products/{sku}` as the admin.
    pub fn put_product(&self, sku: &str, body: &Value) -> Response {
        let (k, v) = admin_auth();
        self.app
            .send_json("PUT", &format!("/api/products/{sku}"), &[(k, &v)], body)
            .expect("PUT product")
    }
}

/// Rows of `query` run by the sqlite3 CLI on `file`, as JSON objects.
fn sqlite3_json(file: &Path, query: &str) -> Vec<Value> {
    // Waits for a write lock the app holds (a migration, a commit) instead of failing at once
    // with "database is locked", as the app's own connections do.
    let out = std::process::Command::new("sqlite3")
        .arg("-json")
        .args(["-cmd", ".timeout 5000"])
        .arg(file)
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

/// What a compensator run's relay did (`claimed`, `sent`, ...) in the database `label`
/// (`orders-shard<k>`, `payments`), from the run's report.
pub fn relayed(report: &Value, label: &str) -> Value {
    let pairs = report["relayed"].as_array().cloned().unwrap_or_default();
    let entry = pairs.into_iter().find(|pair| pair[0] == label);
    entry.unwrap_or_else(|| panic!("no {label} in {report}"))[1].clone()
}

/// The order context's shards by default (`order_shards` in spin.toml).
pub const ORDER_SHARDS: u32 = 4;

/// The label of the order context's shard `k`.
pub fn shard_label(k: u32) -> String {
    format!("{}{k}", shop_domain::shard::LABEL_PREFIX)
}

/// The labels of the contexts' databases, as in the repository's `runtime-config.toml`: every
/// shard label the manifests grant (`orders-shard0` .. `orders-shard7`), `payments`, `coupons`.
pub fn labels() -> Vec<String> {
    let shards = (0..shop_domain::shard::MAX_SHARDS).map(shard_label);
    shards
        .chain(["payments".to_owned(), "coupons".to_owned()])
        .collect()
}

/// Writes a runtime config mapping every label to a file in `dir` (absolute paths: Spin resolves
/// relative ones against the working directory) and returns its path.
pub fn runtime_config(dir: &Path) -> PathBuf {
    let text: String = labels()
        .iter()
        .map(|l| {
            let file = dir.join(format!("{l}.db"));
            format!(
                "[sqlite_database.{l}]\ntype = \"spin\"\npath = {:?}\n\n",
                file.display().to_string()
            )
        })
        .collect();
    let path = dir.join("runtime-config.toml");
    std::fs::write(&path, text).expect("write runtime config");
    path
}

enum Manifest {
    Real,
    /// A launcher script given by the caller starts both apps itself.
    Launched,
    WithoutCron,
    WithoutReceivers,
    /// The HTTP app (no receivers, cron silenced) with the stock component on its own Redis
    /// (`host:port`): the stock store can then be stalled without stalling the order
    /// component's Redis.
    StockOn(String),
}

/// The HTTP app's manifest; the receivers' app sits beside it (docs/deploy.md).
pub const HTTP_MANIFEST: &str = "spin.toml";
pub const RECEIVERS_MANIFEST: &str = "spin.receivers.toml";

/// Whether this is a CI run (`CI` set to anything but empty, `0` or `false`).
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.as_str(), "" | "0" | "false"))
}

/// Starts `manifest` with the e2e variables against `redis`, with its databases in `state`.
/// The host runs the HTTP app and the receivers' app in one process (`--from` twice).
fn start_app(
    manifest: Manifest,
    redis: &RedisServer,
    state: &Path,
    configure: impl FnOnce(testkit::SpinAppBuilder) -> testkit::SpinAppBuilder,
) -> SpinApp {
    let (http, receivers) = match manifest {
        Manifest::Real => (
            repo_root().join(HTTP_MANIFEST),
            Some(repo_root().join(RECEIVERS_MANIFEST)),
        ),
        Manifest::WithoutCron => (
            manifest_copy(state, HTTP_MANIFEST),
            Some(manifest_copy(state, RECEIVERS_MANIFEST)),
        ),
        Manifest::WithoutReceivers => (manifest_copy(state, HTTP_MANIFEST), None),
        Manifest::StockOn(host) => (stock_on(&manifest_copy(state, HTTP_MANIFEST), &host), None),
        Manifest::Launched => (repo_root().join(HTTP_MANIFEST), None),
    };
    let mut builder = SpinApp::builder(http);
    if let Some(receivers) = receivers {
        builder = builder.arg("--from").arg(receivers.display().to_string());
    }
    let builder = builder
        .state_dir(state)
        .runtime_config(runtime_config(state))
        .variable("redis_host", redis.host())
        .variable("admin_token", ADMIN_TOKEN)
        .variable("internal_token", INTERNAL_TOKEN)
        .variable("payment_webhook_secret", WEBHOOK_SECRET)
        .variable("payment_secret_key", PAYMENT_SECRET_KEY)
        .variable("payment_api_base", default_provider().base())
        .variable("auth_jwks", test_jwks())
        .variable("auth_issuer", AUTH_ISSUER)
        .variable("auth_audience", AUTH_AUDIENCE)
        .startup_timeout(Duration::from_secs(180));
    let builder = GUARDS_OFF
        .iter()
        .fold(builder, |b, (name, value)| b.variable(name, *value));
    configure(builder)
        .start()
        .unwrap_or_else(|e| panic!("the real spin.toml did not start: {e:#}"))
}

/// The rate limits, hoarding caps and the breaker as every e2e boot starts them: limits and
/// caps off, and a breaker that needs more calls than any test makes. The other test files
/// predate them and fire bursts of orders as one customer (many of them unpaid, of more than ten
/// units) and of product reads from one address; their meaning is not the guards'. tests/tests/guards.rs turns them on ([`guards_on`], or its own values) through the
/// boot's `configure`, which runs after these.
pub const GUARDS_OFF: [(&str, &str); 11] = [
    ("rate_limit_order_create", "off"),
    ("rate_limit_order_create_per_customer", "off"),
    ("rate_limit_order_read_per_customer", "off"),
    ("rate_limit_product_read_per_client", "off"),
    ("rate_limit_stock_reserve", "off"),
    ("rate_limit_flash_sale", "off"),
    ("rate_limit_flash_per_customer", "off"),
    ("breaker_order_stock", "min 1000000"),
    ("breaker_order_coupon", "min 1000000"),
    ("hoarding_max_unpaid_orders", "off"),
    ("hoarding_max_units_per_product", "off"),
];

/// Turns the [`GUARDS_OFF`] settings back to spin.toml's defaults (each variable set to its
/// default, read from the manifest).
pub fn guards_on(mut b: testkit::SpinAppBuilder) -> testkit::SpinAppBuilder {
    let manifest = std::fs::read_to_string(repo_root().join(HTTP_MANIFEST)).expect("spin.toml");
    for (name, _) in GUARDS_OFF {
        let line = manifest
            .lines()
            .find(|l| l.starts_with(&format!("{name} = {{ default = ")))
            .unwrap_or_else(|| panic!("spin.toml declares no default for {name}"));
        let default = line.split('"').nth(1).expect("quoted default");
        b = b.variable(name, default);
    }
    b
}

/// Another host process running the HTTP app (no receivers, cron silenced) against the same
/// Redis as a [`Shop`], with its own databases: a second instance of the shop, as a second
/// node would run it. Dropped: stopped.
pub struct SecondApp {
    pub app: SpinApp,
    _state: tempfile::TempDir,
}

impl Shop {
    /// The HTTP app with the stock component on `stock_redis` instead of the shop's Redis
    /// ([`Manifest::StockOn`]), no receivers and no cron.
    pub fn boot_with_stock_on(
        stock_redis: &RedisServer,
        configure: impl FnOnce(testkit::SpinAppBuilder) -> testkit::SpinAppBuilder,
    ) -> Shop {
        Self::boot_manifest(Manifest::StockOn(stock_redis.host()), configure)
    }

    /// As [`Shop::boot_with_stock_on`], under the real Spin CLI (`spin up --from` the manifest
    /// copy, no receivers); `None` (SKIPPED) without a CLI, as [`Shop::boot_real_spin`].
    pub fn boot_real_spin_with_stock_on(
        stock_redis: &RedisServer,
        configure: impl FnOnce(testkit::SpinAppBuilder) -> testkit::SpinAppBuilder,
    ) -> Option<Shop> {
        let Some(spin) = testkit::spin_cli() else {
            assert!(!ci(), "CI is set and there is no Spin CLI");
            eprintln!("SKIPPED: no Spin CLI (set SPIN_BIN or put `spin` on the PATH)");
            return None;
        };
        let manifest = Manifest::StockOn(stock_redis.host());
        Some(Self::boot_manifest(manifest, |b| configure(b.binary(spin))))
    }

    /// Starts a [`SecondApp`] beside this shop, sharing its Redis.
    pub fn second_app(
        &self,
        configure: impl FnOnce(testkit::SpinAppBuilder) -> testkit::SpinAppBuilder,
    ) -> SecondApp {
        let state = tempfile::Builder::new()
            .prefix("spin-shop-e2e-second-")
            .tempdir()
            .expect("state dir");
        let app = start_app(
            Manifest::WithoutReceivers,
            &self.redis,
            state.path(),
            configure,
        );
        SecondApp { app, _state: state }
    }

    /// The Redis server's clock (`TIME`), in microseconds: the clock the rate limits run on.
    pub fn redis_time_us(&self) -> u64 {
        let out = self.cli(&["TIME"]);
        let mut parts = out
            .split_whitespace()
            .map(|p| p.parse::<u64>().expect("TIME"));
        let (s, us) = (parts.next().expect("seconds"), parts.next().expect("us"));
        s * 1_000_000 + us
    }
}

/// Rewrites the manifest copy at `path` so that the stock component (its grant and its
/// `redis_url`) uses the Redis at `host`; returns the path.
fn stock_on(path: &Path, host: &str) -> PathBuf {
    let text = std::fs::read_to_string(path).expect("manifest copy");
    let mut in_stock = false;
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            if line.starts_with('[') {
                in_stock = line.starts_with("[component.stock");
            }
            match in_stock {
                true => line.replace("redis://{{ redis_host }}", &format!("redis://{host}")),
                false => line.to_owned(),
            }
        })
        .collect();
    assert!(lines.iter().any(|l| l.contains(&format!("redis://{host}"))));
    std::fs::write(path, lines.join("\n")).expect("write manifest copy");
    path.to_owned()
}

/// Writes a copy of the repository's manifest `file` into `dir` whose cron expressions fire once
/// a year and whose component sources are absolute paths to the built `.wasm` files.
fn manifest_copy(dir: &Path, file: &str) -> PathBuf {
    let real = std::fs::read_to_string(repo_root().join(file))
        .unwrap_or_else(|e| panic!("read {file}: {e}"));
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
    assert!(
        crons > 0 || file != HTTP_MANIFEST,
        "{file} has no cron trigger to silence"
    );
    let path = dir.join(format!("without-cron.{file}"));
    std::fs::write(&path, copy.join("\n")).expect("write manifest copy");
    path
}

/// A Stripe-shaped event as the payment provider sends it (`payment_intent.succeeded`, ...).
pub fn stripe_event(
    event_id: &str,
    kind: &str,
    order_id: &str,
    amount: i64,
    currency: &str,
) -> Value {
    serde_json::json!({
        "id": event_id,
        "object": "event",
        "type": kind,
        "created": unix_now(),
        "data": {"object": {
            "id": format!("pi_{order_id}"),
            "object": "payment_intent",
            "amount": amount,
            "currency": currency,
            "metadata": {"order_id": order_id},
        }},
    })
}

/// The provider's `charge.refunded` for payment `intent` of order `order_id`: `amount` (EUR)
/// refunded in full.
pub fn charge_refunded(event_id: &str, order_id: &str, intent: &str, amount: i64) -> Value {
    serde_json::json!({
        "id": event_id, "object": "event", "type": "charge.refunded", "created": unix_now(),
        "data": {"object": {
            "id": format!("ch_{intent}"), "object": "charge", "amount": amount,
            "amount_refunded": amount, "currency": "eur", "payment_intent": intent,
            "metadata": {"order_id": order_id},
        }},
    })
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The `Stripe-Signature` header of `body` signed at `t` with `secret`: `t=<t>,v1=<hex>`, the
/// HMAC-SHA256 of `"{t}.{body}"`.
pub fn stripe_signature(secret: &str, t: i64, body: &[u8]) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

impl Shop {
    /// `POST /api/payments/webhook` with `event`, signed now with the e2e secret.
    pub fn webhook(&self, event: &Value) -> Response {
        let body = serde_json::to_vec(event).expect("json");
        let sig = stripe_signature(WEBHOOK_SECRET, unix_now(), &body);
        self.webhook_raw(&body, Some(&sig))
    }

    /// Hands every entry `group` holds unacknowledged on `topic` to its receiver once more (as
    /// its takeover after the minimum idle time would): their idle time moved past it without
    /// counting a delivery, then a ring of the topic's doorbell. Returns the entries.
    pub fn redeliver_pending(&self, topic: &str, group: &str) -> Vec<String> {
        let stream = format!("events:{topic}");
        let out = self.cli(&["XPENDING", &stream, group, "-", "+", "100"]);
        let entries: Vec<String> = match out.starts_with("NOGROUP") {
            true => Vec::new(),
            // Four lines per entry: id, consumer, idle ms, deliveries.
            false => out
                .lines()
                .collect::<Vec<_>>()
                .chunks(4)
                .map(|e| e[0].to_owned())
                .collect(),
        };
        for entry in &entries {
            self.cli(&[
                "XCLAIM", &stream, group, group, "0", entry, "IDLE", "3600000", "JUSTID",
            ]);
        }
        self.cli(&["PUBLISH", &format!("doorbell:{topic}"), ""]);
        entries
    }

    /// `POST /api/payments/webhook` with raw bytes and an optional signature header.
    pub fn webhook_raw(&self, body: &[u8], signature: Option<&str>) -> Response {
        let mut headers = vec![("content-type", "application/json")];
        if let Some(s) = signature {
            headers.push(("stripe-signature", s));
        }
        self.app
            .send("POST", "/api/payments/webhook", &headers, Some(body))
            .expect("POST webhook")
    }

    /// `GET /api/orders/{id}` until `cond` holds on its body, for effects that travel as
    /// messages; panics with the last body after `timeout`.
    pub fn wait_order(
        &self,
        order_id: &str,
        timeout: Duration,
        cond: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let body = self.get_order(order_id).json();
            if cond(&body) {
                return body;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "order {order_id} did not get there within {timeout:?}: {body}\n{}",
                self.app.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `GET /api/products/{sku}`'s levels (available, reserved, sold).
    pub fn levels(&self, sku: &str) -> (i64, i64, i64) {
        let p = self
            .app
            .get(&format!("/api/products/{sku}"))
            .expect("GET product")
            .json();
        let n = |k: &str| p[k].as_i64().unwrap_or_else(|| panic!("no {k} in {p}"));
        (n("available"), n("reserved"), n("sold"))
    }

    /// Waits until `cond` holds on the levels of `sku`; panics with them after `timeout`.
    pub fn wait_levels(
        &self,
        sku: &str,
        timeout: Duration,
        cond: impl Fn((i64, i64, i64)) -> bool,
    ) -> (i64, i64, i64) {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let l = self.levels(sku);
            if cond(l) {
                return l;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{sku} levels stayed {l:?}\n{}",
                self.app.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `GET /api/orders/{id}` as the admin (who may read any customer's order).
    pub fn get_order(&self, order_id: &str) -> Response {
        let (k, v) = admin_auth();
        self.app
            .send("GET", &format!("/api/orders/{order_id}"), &[(k, &v)], None)
            .expect("GET order")
    }

    /// `GET path` with customer `user`'s token.
    pub fn get_as(&self, user: &str, path: &str) -> Response {
        let (k, v) = customer_auth(user);
        self.app.send("GET", path, &[(k, &v)], None).expect("GET")
    }

    /// `POST /api/orders` of `qty` x `sku` for user `u1` (with u1's token) under Idempotency-Key
    /// `key`; asserts 201 and returns the order.
    pub fn create_order(&self, key: &str, sku: &str, qty: i64) -> Value {
        let (k, v) = customer_auth("u1");
        let resp = self
            .app
            .send_json(
                "POST",
                "/api/orders",
                &[("idempotency-key", key), (k, &v)],
                &serde_json::json!({"user_id": "u1", "items": [{"sku": sku, "quantity": qty}]}),
            )
            .expect("POST order");
        assert_eq!(resp.status, 201, "{}", resp.text());
        resp.json()
    }

    /// Forgets which message ids were sent (`outbox:sent:*`, what `publish.lua` remembers so the
    /// relay does not send a fast-path row again): as if the memory had expired or the fast path
    /// had never run, so the next relay run appends every unstamped row.
    pub fn forget_sent_messages(&self) {
        self.redis
            .cli(&[
                "EVAL",
                "for _, k in ipairs(redis.call('KEYS', 'outbox:sent:*')) do redis.call('DEL', k) end return 0",
                "0",
            ])
            .expect("forget sent message ids");
    }

    /// `POST /api/compensator/run` with the internal token (one run, as a CronJob would).
    pub fn compensator_run(&self) -> Value {
        let (k, v) = internal_auth();
        let resp = self
            .app
            .send("POST", "/api/compensator/run", &[(k, &v)], None)
            .expect("POST run");
        assert_eq!(resp.status, 200, "{}", resp.text());
        resp.json()
    }
}

/// The typed client every e2e file shares: each call carries the credential its route needs
/// (a customer's token, the admin's, or the internal service token).
impl Shop {
    /// `POST /api/orders` with customer `user`'s token under Idempotency-Key `key`.
    pub fn order_as(&self, user: &str, key: &str, body: &Value) -> Response {
        let (k, v) = customer_auth(user);
        self.app
            .send_json(
                "POST",
                "/api/orders",
                &[("idempotency-key", key), (k, &v)],
                body,
            )
            .expect("POST /api/orders")
    }

    /// `POST /api/orders/{id}/cancel` with customer `user`'s token.
    pub fn cancel(&self, user: &str, order_id: &str) -> Response {
        let (k, v) = customer_auth(user);
        self.app
            .send(
                "POST",
                &format!("/api/orders/{order_id}/cancel"),
                &[(k, &v)],
                Some(b""),
            )
            .expect("POST cancel")
    }

    /// `POST /api/orders/compensate` with the internal token (the operator's direct repair).
    pub fn compensate(&self) -> Response {
        let (k, v) = internal_auth();
        self.app
            .send("POST", "/api/orders/compensate", &[(k, &v)], Some(b""))
            .expect("POST compensate")
    }

    /// Applies the order schema in every shard so a test can read or plant rows with sqlite3:
    /// the admin's read of an order id nobody has visits every shard (opening one migrates it).
    pub fn migrate_orders(&self) {
        let warm = self.get_order(NO_ORDER);
        assert_eq!(warm.status, 404, "{}", warm.text());
    }

    /// `POST /api/orders` with `token` as the bearer (any string: forged, expired, another
    /// key's), or with no `authorization` at all.
    pub fn order_with_token(&self, token: Option<&str>, key: &str, body: &Value) -> Response {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("idempotency-key", key)];
        if let Some(b) = &bearer {
            headers.push(("authorization", b));
        }
        self.app
            .send_json("POST", "/api/orders", &headers, body)
            .expect("POST order")
    }

    /// `method path` (empty body) with customer `user`'s token.
    pub fn send_as(&self, user: &str, method: &str, path: &str) -> Response {
        let (k, v) = customer_auth(user);
        self.app
            .send(method, path, &[(k, &v)], Some(b""))
            .expect("send")
    }

    /// Rows in `table` of the order context's database.
    pub fn count_rows(&self, table: &str) -> i64 {
        self.sql(&format!("SELECT COUNT(*) AS n FROM {table}"))[0]["n"]
            .as_i64()
            .unwrap()
    }

    /// `GET /api/products/{sku}` (public).
    pub fn get_product(&self, sku: &str) -> Response {
        self.app
            .get(&format!("/api/products/{sku}"))
            .expect("GET product")
    }

    /// `POST /api/stock/reservations` with `body` and the internal token, as the order
    /// component calls it.
    pub fn reserve(&self, body: &Value) -> Response {
        let (k, v) = internal_auth();
        self.app
            .send_json("POST", "/api/stock/reservations", &[(k, &v)], body)
            .expect("POST reservation")
    }

    /// `GET /api/stock/reservations/{id}` with the internal token.
    pub fn get_reservation(&self, id: &str) -> Response {
        let (k, v) = internal_auth();
        self.app
            .send(
                "GET",
                &format!("/api/stock/reservations/{id}"),
                &[(k, &v)],
                None,
            )
            .expect("GET reservation")
    }

    /// `POST path` (no body) with the internal token: a reservation's confirm or release, a
    /// repair route.
    pub fn post_internal(&self, path: &str) -> Response {
        let (k, v) = internal_auth();
        self.app.send("POST", path, &[(k, &v)], None).expect("POST")
    }

    /// The stock reservation behind `order` (as the order context stored it).
    pub fn reservation_of(&self, order: &Value) -> String {
        let id = order["order_id"].as_str().expect("order_id");
        let rows = self.sql(&format!(
            "SELECT reservation_id FROM orders WHERE order_id = '{id}'"
        ));
        rows[0]["reservation_id"]
            .as_str()
            .expect("reservation_id")
            .to_owned()
    }

    /// Releases the reservation behind `order` at the stock context (as a cancel or an expiry
    /// would, without the order knowing); returns its id.
    pub fn release_reservation_of(&self, order: &Value) -> String {
        let rid = self.reservation_of(order);
        let resp = self.post_internal(&format!("/api/stock/reservations/{rid}/release"));
        assert_eq!(resp.status, 200, "release {rid}: {}", resp.text());
        rid
    }

    /// `POST /api/stock/reservations/expire` (with `body` when given), with the internal token
    /// when `internal`.
    pub fn expire_reservations(&self, body: Option<&Value>, internal: bool) -> Response {
        let (k, v) = internal_auth();
        let headers: Vec<(&str, &str)> = if internal { vec![(k, &v)] } else { vec![] };
        let path = "/api/stock/reservations/expire";
        match body {
            Some(b) => self.app.send_json("POST", path, &headers, b),
            None => self.app.send("POST", path, &headers, None),
        }
        .expect("POST expire")
    }

    /// `POST /api/products/{sku}/stock-adjustments` with `body` as the admin.
    pub fn adjust_stock(&self, sku: &str, body: &Value) -> Response {
        let (k, v) = admin_auth();
        self.app
            .send_json(
                "POST",
                &format!("/api/products/{sku}/stock-adjustments"),
                &[(k, &v)],
                body,
            )
            .expect("POST stock adjustment")
    }

    /// `PUT /api/coupons/{code}` with `body` as the admin.
    pub fn put_coupon(&self, code: &str, body: &Value) -> Response {
        let (k, v) = admin_auth();
        self.app
            .send_json("PUT", &format!("/api/coupons/{code}"), &[(k, &v)], body)
            .expect("PUT coupon")
    }

    /// `GET /api/coupons/{code}` as the admin.
    pub fn get_coupon(&self, code: &str) -> Response {
        let (k, v) = admin_auth();
        self.app
            .send("GET", &format!("/api/coupons/{code}"), &[(k, &v)], None)
            .expect("GET coupon")
    }

    /// TCC try: `POST /api/coupons/{code}/redemptions` with the internal token.
    pub fn try_coupon(&self, code: &str, body: &Value) -> Response {
        let (k, v) = internal_auth();
        let path = format!("/api/coupons/{code}/redemptions");
        self.app
            .send_json("POST", &path, &[(k, &v)], body)
            .expect("POST redemption")
    }

    /// TCC confirm or cancel (`step`) of redemption `id` of `code`, with the internal token.
    pub fn settle_coupon(&self, code: &str, id: &str, step: &str) -> Response {
        self.post_internal(&format!("/api/coupons/{code}/redemptions/{id}/{step}"))
    }

    /// `GET /api/coupons/{code}/redemptions/{id}` with the internal token: the redemption.
    pub fn redemption(&self, code: &str, id: &str) -> Value {
        let (k, v) = internal_auth();
        let path = format!("/api/coupons/{code}/redemptions/{id}");
        let resp = self.app.send("GET", &path, &[(k, &v)], None).expect("GET");
        assert_eq!(resp.status, 200, "{path}: {}", resp.text());
        resp.json()
    }

    /// Waits until redemption `id` of `code` is `status` (settled by the coupon receiver);
    /// panics with the last one after `timeout`.
    pub fn wait_redemption(&self, code: &str, id: &str, status: &str, timeout: Duration) -> Value {
        let mut last = Value::Null;
        let found = wait_for_or(timeout, || {
            last = self.redemption(code, id);
            (last["status"] == status).then(|| last.clone())
        });
        found.unwrap_or_else(|| {
            panic!(
                "redemption {id} of {code} is not {status}: {last}\n{}",
                self.app.stderr()
            )
        })
    }

    /// The provider's `payment_intent.succeeded` for `order` (its total, in EUR), signed and
    /// accepted by the webhook.
    pub fn pay(&self, event_id: &str, order: &Value) {
        let id = order["order_id"].as_str().expect("order_id");
        let total = order["total"].as_i64().expect("total");
        let event = stripe_event(event_id, "payment_intent.succeeded", id, total, "eur");
        let resp = self.webhook(&event);
        assert_eq!(resp.status, 200, "{}", resp.text());
    }

    /// A coupon's `(held, confirmed)` counts.
    pub fn coupon_usage(&self, code: &str) -> (i64, i64) {
        let c = self.get_coupon(code).json();
        let n = |k: &str| c[k].as_i64().unwrap_or_else(|| panic!("no {k} in {c}"));
        (n("held"), n("confirmed"))
    }

    /// One redis-cli command on the shop's Redis; panics with the error.
    pub fn cli(&self, args: &[&str]) -> String {
        self.redis
            .cli(args)
            .unwrap_or_else(|e| panic!("redis-cli {args:?}: {e:#}"))
    }

    /// `CLIENT PAUSE <120 s> WRITE`: Redis keeps answering reads, and every write command
    /// (and every script that may write, such as the stock component's) waits until
    /// [`Shop::unpause_redis`], as on a stalled primary.
    pub fn pause_redis_writes(&self) {
        self.redis
            .cli(&["CLIENT", "PAUSE", "120000", "WRITE"])
            .expect("CLIENT PAUSE");
    }

    /// `CLIENT UNPAUSE`: the writes waiting since [`Shop::pause_redis_writes`] run.
    pub fn unpause_redis(&self) {
        self.redis
            .cli(&["CLIENT", "UNPAUSE"])
            .expect("CLIENT UNPAUSE");
    }

    /// Clients whose commands Redis holds back (a write paused by [`Shop::pause_redis_writes`]
    /// counts here).
    pub fn redis_blocked_clients(&self) -> i64 {
        let info = self.cli(&["INFO", "clients"]);
        let line = info.lines().find(|l| l.starts_with("blocked_clients:"));
        line.and_then(|l| l["blocked_clients:".len()..].trim().parse().ok())
            .expect("INFO clients has blocked_clients")
    }

    /// `CONFIG SET maxmemory 1` (the policy stays `noeviction`): Redis is full and refuses every
    /// write with `OOM`, while reads and scripts that only read still answer; a script's first
    /// write fails before it changed anything. [`Shop::redis_memory_freed`] undoes it.
    pub fn redis_memory_full(&self) {
        self.cli(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
        self.cli(&["CONFIG", "SET", "maxmemory", "1"]);
    }

    /// `CONFIG SET maxmemory 0`: Redis takes writes again.
    pub fn redis_memory_freed(&self) {
        self.cli(&["CONFIG", "SET", "maxmemory", "0"]);
    }

    /// Waits until the stock receiver has taken the order context's message `kind` about
    /// `order_id` (and everything before it) from `events:orders`.
    pub fn wait_stock_took(&self, kind: &str, order_id: &str, timeout: Duration) {
        let entry = format!("\"type\":\"{kind}\",\"aggregate_id\":\"{order_id}\"");
        self.wait_group_caught_up("events:orders", "stock", &entry, timeout);
    }

    /// Waits until `stream` holds an entry containing `containing` ("" for any state, even
    /// empty), then until consumer group `group` was handed the stream's last entry of that
    /// moment and has acknowledged everything (its receiver ran to the end of it).
    pub fn wait_group_caught_up(
        &self,
        stream: &str,
        group: &str,
        containing: &str,
        timeout: Duration,
    ) {
        let last = wait_for(timeout, &format!("{containing:?} in {stream}"), || {
            let entries = self.cli(&["XRANGE", stream, "-", "+"]);
            let lines: Vec<&str> = entries.lines().collect();
            // redis-cli prints each entry as its id, then field and value (one field, `m`).
            let last = lines.chunks(3).last().map_or("0-0", |e| e[0]).to_owned();
            entries.contains(containing).then_some(last)
        });
        wait_for(timeout, &format!("{group} caught up on {stream}"), || {
            // No such stream or group yet: the receiver has not run.
            let info = self.redis.cli(&["XINFO", "GROUPS", stream]).ok()?;
            let lines: Vec<&str> = info.lines().collect();
            let start = lines.windows(2).position(|w| w == ["name", group])?;
            let field = |name: &str| {
                let fields = lines[start + 2..].chunks(2).take_while(|c| c[0] != "name");
                fields.into_iter().find(|c| c[0] == name).map(|c| c[1])
            };
            (field("last-delivered-id") == Some(&last) && field("pending") == Some("0"))
                .then_some(())
        });
    }
}

/// The source of the stock component's Lua script `name`, to run it through redis-cli where a
/// test needs a step no HTTP request can reach (a stale lock holder, a redelivered message).
/// Composed as the component runs it: `fulfil` and `purchase` come with the adapter's
/// `publish.lua` before them, the scripts that settle reservations with `holdings.lua` and
/// `flash_units.lua`, and the sweeps and `ticket` with `clock.lua` first (as
/// functions/stock/src/redis.rs composes them).
pub fn stock_lua(name: &str) -> String {
    let read = |path: &str| std::fs::read_to_string(repo_root().join(path)).expect("lua script");
    let script = read(&format!("functions/stock/src/lua/{name}.lua"));
    let publish = || read("crates/adapter/lua/publish.lua");
    let holdings = || read("functions/stock/src/lua/holdings.lua");
    let units = || read("functions/stock/src/lua/flash_units.lua");
    let clock = || read("functions/stock/src/lua/clock.lua");
    match name {
        "fulfil" => format!("{}\n{}\n{}\n{script}", publish(), holdings(), units()),
        "purchase" => format!("{}\n{script}", publish()),
        "release" | "confirm" => format!("{}\n{}\n{script}", holdings(), units()),
        "expire" => format!("{}\n{}\n{}\n{script}", clock(), holdings(), units()),
        "ticket" => format!("{}\n{}\n{script}", clock(), units()),
        "close_sales" => format!("{}\n{script}", clock()),
        _ => script,
    }
}

/// Polls `cond` every 50 ms until it returns `Some`; panics naming `what` after `timeout`.
/// The id of the order customer `user`'s Idempotency-Key `key` creates (derived from the
/// claim, as the order component does: also its coupon redemption id).
pub fn order_id_of(user: &str, key: &str) -> String {
    use shop_domain::idempotency::{ClaimKey, IdempotencyKey};
    use shop_domain::new_order::UserId;
    let user = UserId::parse(user).expect("user id");
    ClaimKey::new(user, IdempotencyKey::parse(key).expect("key")).order_id()
}

/// `cond`'s first `Some` within `timeout`, polled every 50 ms; `None` when it never came.
pub fn wait_for_or<T>(timeout: Duration, mut cond: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = cond() {
            return Some(v);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn wait_for<T>(timeout: Duration, what: &str, mut cond: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = cond() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `authorization` header of the shop's own components (internal routes).
pub fn internal_auth() -> (&'static str, String) {
    ("authorization", format!("Bearer {INTERNAL_TOKEN}"))
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

/// What [`send_streaming`] saw: the answer, and how much of the body had been sent when it came.
pub struct StreamedAnswer {
    pub status: u16,
    pub body: String,
    /// Body bytes the client had written when the answer arrived.
    pub sent_at_answer: usize,
    /// Whether the client had sent the whole body when the answer arrived.
    pub body_finished: bool,
}

/// Sends `method path` to `base_url` (`http://host:port`) over a raw TCP connection with
/// `headers` and a chunked body of `total` bytes (`chunk` repeated), written by another thread
/// while this one waits for the answer, so a server that answers before reading everything is
/// seen doing so. The connection is shut once the answer is read.
pub fn send_streaming(
    base_url: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    chunk: &[u8],
    total: usize,
) -> StreamedAnswer {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    let addr = base_url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("send head");
    let (sent, finished) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let writer = {
        let (mut out, chunk) = (stream.try_clone().expect("clone"), chunk.to_vec());
        let (sent, finished) = (sent.clone(), finished.clone());
        std::thread::spawn(move || {
            while sent.load(Ordering::SeqCst) < total {
                let n = chunk.len().min(total - sent.load(Ordering::SeqCst));
                let frame = [format!("{n:x}\r\n").as_bytes(), &chunk[..n], b"\r\n"].concat();
                if out.write_all(&frame).is_err() {
                    return; // the server closed the connection: it will not read the rest
                }
                sent.fetch_add(n, Ordering::SeqCst);
            }
            if out.write_all(b"0\r\n\r\n").is_ok() {
                finished.store(true, Ordering::SeqCst);
            }
        })
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .expect("read timeout");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut line = String::new();
    reader.read_line(&mut line).expect("status line");
    let (sent_at_answer, body_finished) =
        (sent.load(Ordering::SeqCst), finished.load(Ordering::SeqCst));
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {line:?}"));
    let (mut length, mut chunked) = (0, false);
    loop {
        line.clear();
        reader.read_line(&mut line).expect("header line");
        if line.trim().is_empty() {
            break;
        }
        let (k, v) = line.split_once(':').unwrap_or((&line, ""));
        match k.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = v.trim().parse().unwrap_or(0),
            "transfer-encoding" => chunked = v.trim().eq_ignore_ascii_case("chunked"),
            _ => {}
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line).expect("chunk size");
            let n = usize::from_str_radix(line.trim(), 16).expect("chunk size");
            let mut part = vec![0; n + 2];
            reader.read_exact(&mut part).expect("chunk");
            body.extend_from_slice(&part[..n]);
            if n == 0 {
                break;
            }
        }
    } else {
        body.resize(length, 0);
        reader.read_exact(&mut body).expect("response body");
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
    writer.join().expect("writer thread");
    StreamedAnswer {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
        sent_at_answer,
        body_finished,
    }
}

/// Boots and restarts with variables of the caller's (e.g. a low `stream_lag_threshold`).
impl Shop {
    /// As [`Shop::boot_without_cron`], letting the caller add variables or arguments.
    pub fn boot_without_cron_with(
        configure: impl FnOnce(testkit::SpinAppBuilder) -> testkit::SpinAppBuilder,
    ) -> Shop {
        Self::boot_manifest(Manifest::WithoutCron, configure)
    }

    /// Stops the app and starts it again on the same Redis and state dir with the receivers
    /// away (as [`Shop::boot_without_receivers`]): a receiver taken away after its consumer
    /// groups were created. [`Shop::restart_without_cron_with`] brings it back.
    pub fn restart_without_receivers_with(
        &mut self,
        configure: impl FnOnce(testkit::SpinAppBuilder) -> testkit::SpinAppBuilder,
    ) {
        let placeholder = start_app(
            Manifest::WithoutReceivers,
            &self.redis,
            self.state.path(),
            configure,
        );
        let old = std::mem::replace(&mut self.app, placeholder);
        old.stop();
    }
}

/// Flash sales: the admin's sale, a customer's purchase and its ticket.
impl Shop {
    /// `PUT /api/flash-sales/{sale}` as the admin.
    pub fn put_sale(&self, sale: &str, body: &Value) -> Response {
        let (k, v) = admin_auth();
        self.app
            .send_json("PUT", &format!("/api/flash-sales/{sale}"), &[(k, &v)], body)
            .expect("PUT flash sale")
    }

    /// A product `sku` with `stock` units at 5000 EUR and a sale of `quantity` of them at 999
    /// EUR, open from a minute ago for an hour, `per_user_limit` per buyer; asserts 201.
    pub fn open_sale(&self, sale: &str, sku: &str, stock: i64, quantity: i64, per_user_limit: i64) {
        let product = self.put_product(
            sku,
            &serde_json::json!({"name": sku, "price": 5000, "currency": "EUR", "stock": stock}),
        );
        assert_eq!(product.status, 200, "{}", product.text());
        let resp = self.put_sale(
            sale,
            &sale_body(sku, 999, quantity, per_user_limit, -60, 3600),
        );
        assert_eq!(resp.status, 201, "{}", resp.text());
    }

    /// `GET /api/flash-sales/{sale}`; asserts 200.
    pub fn get_sale(&self, sale: &str) -> Value {
        let resp = self
            .app
            .get(&format!("/api/flash-sales/{sale}"))
            .expect("GET flash sale");
        assert_eq!(resp.status, 200, "{}", resp.text());
        resp.json()
    }

    /// `POST /api/flash-sales/{sale}/purchase` as customer `user` with Idempotency-Key `key`.
    pub fn purchase(&self, user: &str, sale: &str, key: &str) -> anyhow::Result<Response> {
        purchase_on(&self.app, user, sale, key)
    }

    /// `GET /api/flash-sales/{sale}/tickets/{ticket}` as customer `user`.
    pub fn ticket(&self, user: &str, sale: &str, ticket: &str) -> Response {
        self.get_as(user, &format!("/api/flash-sales/{sale}/tickets/{ticket}"))
    }

    /// The ticket of `user` once it is no longer PENDING; panics with it after `timeout`. Rings
    /// the receivers (a compensator run) while waiting when `ring` is set (cron silenced).
    pub fn wait_ticket(
        &self,
        user: &str,
        sale: &str,
        ticket: &str,
        timeout: Duration,
        ring: bool,
    ) -> Value {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let body = self.ticket(user, sale, ticket).json();
            if body["status"] != "PENDING" {
                return body;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "ticket {ticket} stayed {body}\n{}",
                self.app.stderr()
            );
            if ring {
                let (k, v) = internal_auth();
                let _ = self
                    .app
                    .send("POST", "/api/compensator/run", &[(k, &v)], None);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// [`Shop::purchase`] on `app` alone (a test that restarts the shop's Redis meanwhile holds
/// the Redis mutably).
pub fn purchase_on(app: &SpinApp, user: &str, sale: &str, key: &str) -> anyhow::Result<Response> {
    let (k, v) = customer_auth(user);
    app.send(
        "POST",
        &format!("/api/flash-sales/{sale}/purchase"),
        &[(k, &v), ("idempotency-key", key)],
        None,
    )
}

/// A flash sale body: `quantity` units of `sku` at `price` EUR, `per_user_limit` per buyer, open
/// from `starts_in` to `ends_in` seconds from now.
pub fn sale_body(
    sku: &str,
    price: i64,
    quantity: i64,
    per_user_limit: i64,
    starts_in: i64,
    ends_in: i64,
) -> Value {
    let at = |s: i64| {
        shop_domain::timestamp::Timestamp::from_millis((unix_now() + s) * 1000)
            .expect("a time")
            .to_rfc3339()
    };
    serde_json::json!({
        "sku": sku, "price": price, "currency": "EUR", "quantity": quantity,
        "per_user_limit": per_user_limit, "starts_at": at(starts_in), "ends_at": at(ends_in),
    })
}

/// How many `NNNN_name.sql` files the component has, and the highest NNNN.
pub fn migration_files(component: &str) -> (u64, u64) {
    let dir = repo_root().join(format!("functions/{component}/migrations"));
    let versions: Vec<u64> = std::fs::read_dir(&dir)
        .expect("migrations dir")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".sql")?.split('_').next()?.parse().ok()
        })
        .collect();
    (
        versions.len() as u64,
        versions.iter().copied().max().unwrap_or(0),
    )
}

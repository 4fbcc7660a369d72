//! The engine, the linker and the loaded application (Spin's `spin-core` + `factors-executor`).
//!
//! Every component is compiled once at start-up, in parallel, through wasmtime's on-disk cache
//! (so a restart with unchanged `.wasm` files skips Cranelift), and pre-instantiated
//! (`InstancePre`) against one linker holding every interface a spin-sdk 5.2 component may import.
//! Instances come from the pooling allocator; each call gets a fresh `Store`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use wasmtime::component::{Component, InstancePre, Linker, ResourceTable};
use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::WasiHttpCtx;

use crate::bindings::cron_trigger::SpinCronPre;
use crate::bindings::redis_trigger::RedisTriggerPre;
use crate::capability::{ConfigureAppContext, Problems};
use crate::key_value::KvInstance;
use crate::limits::{HttpLimits, InstanceLimiter, InstanceLimits};
use crate::manifest::App;
use crate::outbound_http::{LocalDispatch, OutboundHttpHooks};
use crate::outbound_networking::{allow_granted_sockets, AllowedHosts};
use crate::redis::RedisInstance;
use crate::routes::Router;
use crate::runtime_config::RuntimeConfig;
use crate::sqlite::SqliteInstance;
use crate::state::{InstanceState, TriggerKind};
use crate::variables::{AppVariables, SharedComponentVariables};
use crate::{key_value, redis, sqlite, stdio};

/// Options that shape the engine.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Use wasmtime's on-disk compilation cache.
    pub cache: bool,
    /// Use the pooling instance allocator.
    pub pooling: bool,
    /// Memory and run time of each instance.
    pub instance: InstanceLimits,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            cache: !env_flag("SPIN_HOST_NO_CACHE"),
            pooling: !env_flag("SPIN_HOST_NO_POOLING"),
            instance: InstanceLimits::default(),
        }
    }
}

/// A boolean environment switch: set to anything but "", "0" or "false".
pub fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !matches!(v.as_str(), "" | "0" | "false"))
}

fn env_knob<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Builds the wasmtime engine.
pub fn build_engine(opts: &EngineOptions) -> Result<Engine> {
    let mut config = wasmtime::Config::new();
    config.wasm_component_model(true);
    // The run time limit: compiled code checks the epoch at function entries and loop heads.
    config.epoch_interruption(opts.instance.max_time.is_some());
    config.parallel_compilation(true);
    // SPIN_HOST_PROFILE=perfmap names compiled wasm functions in /tmp/perf-<pid>.map, so that
    // `perf record` / `perf report` can say where a guest spends its time.
    if std::env::var("SPIN_HOST_PROFILE").as_deref() == Ok("perfmap") {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    if opts.cache {
        match wasmtime::Cache::new(wasmtime::CacheConfig::new()) {
            Ok(cache) => {
                config.cache(Some(cache));
            }
            Err(e) => eprintln!("spin-host: warning: compilation cache disabled: {e:#}"),
        }
    }
    if opts.pooling {
        let max_instances = 1000;
        let keep_resident: usize = env_knob("SPIN_HOST_KEEP_RESIDENT", 4 << 20);
        let pagemap = env_knob("SPIN_HOST_PAGEMAP_SCAN", 1usize) != 0;
        let mut pooling = PoolingAllocationConfig::default();
        pooling
            .total_component_instances(max_instances)
            .total_memories(max_instances)
            .total_tables(2 * max_instances)
            .total_stacks(max_instances)
            .total_core_instances(4 * max_instances)
            .table_elements(100_000)
            .max_component_instance_size(10 << 20)
            .max_core_instance_size(10 << 20)
            .max_core_instances_per_component(200)
            .max_tables_per_component(64)
            .max_memories_per_component(32)
            .max_tables_per_module(2)
            .max_memories_per_module(2)
            .max_memory_size(4 << 30)
            // Reset warm slots in place instead of unmapping them: with PAGEMAP_SCAN (Linux
            // 6.7+) only the pages the guest dirtied are re-copied/zeroed, so the next request
            // neither page-faults nor pays an madvise + TLB shootdown.
            .linear_memory_keep_resident(keep_resident)
            .table_keep_resident(keep_resident)
            .pagemap_scan(if pagemap {
                wasmtime::Enabled::Auto
            } else {
                wasmtime::Enabled::No
            });
        let mut pooled = config.clone();
        pooled.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
        match Engine::new(&pooled) {
            Ok(engine) => return Ok(engine),
            Err(e) => eprintln!("spin-host: warning: pooling allocator unavailable ({e:#}); using on-demand allocation"),
        }
    }
    Engine::new(&config).map_err(anyhow::Error::from)
}

/// Adds every host interface to the linker.
pub fn build_linker(engine: &Engine) -> Result<Linker<InstanceState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    crate::variables::add_to_linker(&mut linker)?;
    crate::key_value::add_to_linker(&mut linker)?;
    crate::sqlite::add_to_linker(&mut linker)?;
    crate::redis::add_to_linker(&mut linker)?;
    crate::unsupported::add_to_linker(&mut linker)?;
    Ok(linker)
}

/// A component, loaded and pre-instantiated, with its resolved configuration.
pub struct ComponentRuntime {
    /// Component id.
    pub id: String,
    /// Pre-instantiated component.
    pub pre: InstancePre<InstanceState>,
    /// Set when the component exports `wasi:http/incoming-handler`.
    pub http: Option<ProxyPre<InstanceState>>,
    /// Set when the component exports `fermyon:spin/inbound-redis`.
    pub redis: Option<RedisTriggerPre<InstanceState>>,
    /// Set when the component exports `handle-cron-event`.
    pub cron: Option<SpinCronPre<InstanceState>>,
    /// Resolved `[component.X.variables]`.
    pub variables: SharedComponentVariables,
    /// Resolved `allowed_outbound_hosts`.
    pub allowed_hosts: Arc<AllowedHosts>,
    /// `key_value_stores`.
    pub key_value_stores: Arc<[String]>,
    /// `sqlite_databases`.
    pub sqlite_databases: Arc<[String]>,
    /// `[component.X.environment]`.
    pub environment: Vec<(String, String)>,
    /// Read-only file mounts (`files`).
    pub mounts: Vec<crate::files::Mount>,
}

/// The running application: components, routes and shared services.
pub struct AppRuntime {
    /// The engine.
    pub engine: Engine,
    /// Components by id.
    pub components: HashMap<String, Arc<ComponentRuntime>>,
    /// HTTP routes.
    pub router: Router,
    /// Key-value stores (shared across requests).
    pub kv: Arc<key_value::KvService>,
    /// SQLite databases (connection pools).
    pub sqlite: Arc<sqlite::SqliteService>,
    /// Outbound Redis connections.
    pub redis: Arc<redis::RedisPool>,
    /// The address the HTTP server listens on (for self-requests), set once bound.
    pub listen_addr: OnceLock<SocketAddr>,
    /// Where component stdout/stderr go.
    pub stdio: stdio::Stdio,
    /// Print one line per HTTP request on stdout (benchmarks turn it off).
    pub log_requests: bool,
    /// `/.well-known/spin/info` body.
    pub info: String,
    /// Memory and run time of each instance.
    pub instance_limits: InstanceLimits,
    /// Request body size, timeouts and connections of the HTTP trigger.
    pub http_limits: HttpLimits,
}

/// Everything needed to load an app.
pub struct LoadOptions {
    /// Parsed manifest.
    pub app: App,
    /// `--state-dir`.
    pub state_dir: PathBuf,
    /// Parsed runtime config.
    pub runtime_config: RuntimeConfig,
    /// Engine options.
    pub engine: EngineOptions,
}

/// A component's configuration, resolved by every capability, before compilation.
struct Configured {
    id: String,
    path: PathBuf,
    variables: SharedComponentVariables,
    allowed_hosts: Arc<AllowedHosts>,
    key_value_stores: Arc<[String]>,
    sqlite_databases: Arc<[String]>,
    environment: Vec<(String, String)>,
    mounts: Vec<crate::files::Mount>,
}

impl AppRuntime {
    /// Loads, validates and pre-instantiates the whole application.
    pub fn load(opts: LoadOptions) -> Result<AppRuntime> {
        let LoadOptions {
            app,
            state_dir,
            runtime_config,
            engine: engine_opts,
        } = opts;
        let vars = AppVariables::resolve(&app, &crate::variables::env_provider())?;
        // Every capability checks its part first: cheap, and errors are clearer before compiling.
        let ctx = ConfigureAppContext::new(&app, &vars, &runtime_config, &state_dir);
        let configured = configure_components(&ctx)?;
        let engine = build_engine(&engine_opts)?;
        if engine_opts.instance.max_time.is_some() {
            crate::limits::start_epoch_ticker(&engine)?;
        }
        let linker = build_linker(&engine)?;
        let components = compile_components(&engine, &linker, configured)?;
        check_trigger_exports(&app, &components)?;
        let router = build_router(&app)?;
        let info = app_info(&app)?;
        std::fs::create_dir_all(&state_dir).with_context(|| {
            format!("cannot create the state directory {}", state_dir.display())
        })?;
        let kv = Arc::new(key_value::KvService::new(&state_dir, &runtime_config)?);
        let sqlite = Arc::new(sqlite::SqliteService::new(&state_dir, &runtime_config)?);
        Ok(AppRuntime {
            engine,
            components,
            router,
            kv,
            sqlite,
            redis: Arc::default(),
            listen_addr: OnceLock::new(),
            stdio: stdio::Stdio,
            log_requests: true,
            info,
            instance_limits: engine_opts.instance,
            http_limits: HttpLimits::default(),
        })
    }

    /// A component by id.
    pub fn component(&self, id: &str) -> Option<&Arc<ComponentRuntime>> {
        self.components.get(id)
    }

    /// A fresh store for one call into `component` from `trigger`, with every capability's
    /// per-instance state; `local` is what the trigger lends outbound HTTP (the HTTP trigger's
    /// self-requests and service chaining).
    pub fn new_store(
        self: &Arc<Self>,
        component: &Arc<ComponentRuntime>,
        trigger: TriggerKind,
        local: Option<Arc<dyn LocalDispatch>>,
    ) -> Store<InstanceState> {
        let mut wasi = WasiCtx::builder();
        wasi.stdout(self.stdio.stream(&component.id))
            .stderr(self.stdio.stream(&component.id));
        if !component.environment.is_empty() {
            wasi.envs(&component.environment);
        }
        if component.allowed_hosts.has_any() {
            allow_granted_sockets(&mut wasi, component.allowed_hosts.clone());
        }
        crate::files::preopen(&mut wasi, &component.id, &component.mounts);
        let state = InstanceState {
            table: ResourceTable::new(),
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            hooks: OutboundHttpHooks::new(component.allowed_hosts.clone(), local),
            trigger,
            allowed_hosts: component.allowed_hosts.clone(),
            variables: component.variables.clone(),
            key_value: KvInstance::new(self.kv.clone(), component.key_value_stores.clone()),
            sqlite: SqliteInstance::new(self.sqlite.clone(), component.sqlite_databases.clone()),
            redis: RedisInstance::new(self.redis.clone(), component.allowed_hosts.clone()),
            limits: InstanceLimiter::new(&self.instance_limits),
            deadline: None,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        let deadline = crate::limits::arm_deadline(&mut store, &self.instance_limits);
        store.data_mut().deadline = deadline;
        store
    }
}

/// Runs every capability's `configure_app` on the loaded components and reports every problem
/// of every capability at once.
fn configure_components(ctx: &ConfigureAppContext<'_>) -> Result<Vec<Configured>> {
    let mut problems = Problems::default();
    let sources = problems.check(ctx.per_component(|id, _| component_source(ctx.app, id)));
    let variables = problems.check(crate::variables::configure_app(ctx));
    let allowed_hosts = problems.check(crate::outbound_networking::configure_app(ctx));
    let kv = problems.check(key_value::configure_app(ctx));
    let sqlite = problems.check(sqlite::configure_app(ctx));
    let mounts = problems.check(crate::files::configure_app(ctx));
    problems.finish()?;
    let (
        Some(mut sources),
        Some(mut variables),
        Some(mut allowed_hosts),
        Some(mut kv),
        Some(mut sqlite),
        Some(mut mounts),
    ) = (sources, variables, allowed_hosts, kv, sqlite, mounts)
    else {
        bail!("a capability failed without an error");
    };
    let mut configure = |id: &str, c: &crate::manifest::Component| -> Option<Configured> {
        Some(Configured {
            id: id.to_string(),
            path: sources.remove(id)?,
            variables: variables.remove(id)?,
            allowed_hosts: allowed_hosts.remove(id)?,
            key_value_stores: kv.remove(id)?,
            sqlite_databases: sqlite.remove(id)?,
            environment: c.environment.clone().into_iter().collect(),
            mounts: mounts.remove(id)?,
        })
    };
    ctx.components
        .iter()
        .map(|(id, c)| configure(id, c).context("a capability skipped a component"))
        .collect()
}

/// The Wasm file of a component, which must exist.
fn component_source(app: &App, id: &str) -> Result<PathBuf> {
    let path = app.component_source_path(id)?;
    if !path.is_file() {
        bail!(
            "component {id:?}: the Wasm file {} does not exist (build it first, e.g. with `spin-host up --build`)",
            path.display()
        );
    }
    Ok(path)
}

/// Compiles every component in parallel (one thread per component; Cranelift also parallelises
/// inside) and pre-instantiates it against the linker.
fn compile_components(
    engine: &Engine,
    linker: &Linker<InstanceState>,
    configured: Vec<Configured>,
) -> Result<HashMap<String, Arc<ComponentRuntime>>> {
    let started = Instant::now();
    let compiled: Vec<Result<Component>> = std::thread::scope(|s| {
        let handles: Vec<_> = configured
            .iter()
            .map(|c| s.spawn(|| compile(engine, &c.id, &c.path)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("compiler thread panicked")))
            })
            .collect()
    });
    let compile_time = started.elapsed();
    let mut components = HashMap::new();
    for (c, component) in configured.into_iter().zip(compiled) {
        let runtime = pre_instantiate(linker, c, &component?)?;
        components.insert(runtime.id.clone(), Arc::new(runtime));
    }
    if env_flag("SPIN_HOST_VERBOSE") {
        eprintln!(
            "spin-host: compiled {} component(s) in {compile_time:?}",
            components.len()
        );
    }
    Ok(components)
}

fn compile(engine: &Engine, id: &str, path: &std::path::Path) -> Result<Component> {
    Component::from_file(engine, path)
        .map_err(anyhow::Error::from)
        .with_context(|| {
            format!(
                "component {id:?}: cannot load {} as a Wasm component",
                path.display()
            )
        })
}

fn pre_instantiate(
    linker: &Linker<InstanceState>,
    c: Configured,
    component: &Component,
) -> Result<ComponentRuntime> {
    let pre = linker
        .instantiate_pre(component)
        .map_err(anyhow::Error::from)
        .with_context(|| {
            format!(
                "component {:?} imports an interface this host does not provide",
                c.id
            )
        })?;
    Ok(ComponentRuntime {
        http: ProxyPre::new(pre.clone()).ok(),
        redis: RedisTriggerPre::new(pre.clone()).ok(),
        cron: SpinCronPre::new(pre.clone()).ok(),
        pre,
        id: c.id,
        variables: c.variables,
        allowed_hosts: c.allowed_hosts,
        key_value_stores: c.key_value_stores,
        sqlite_databases: c.sqlite_databases,
        environment: c.environment,
        mounts: c.mounts,
    })
}

/// Every trigger's component exports what the trigger calls (every mismatch is reported).
fn check_trigger_exports(
    app: &App,
    components: &HashMap<String, Arc<ComponentRuntime>>,
) -> Result<()> {
    let lacks = |id: &str, export: fn(&ComponentRuntime) -> bool| {
        components.get(id).is_some_and(|c| !export(c))
    };
    let mut problems = Problems::default();
    for t in &app.http_triggers {
        if let Some(c) = &t.component {
            if lacks(c, |c| c.http.is_some()) {
                problems.push(anyhow::anyhow!("component {c:?} has an HTTP trigger but does not export wasi:http/incoming-handler@0.2.x"));
            }
        }
    }
    for t in &app.redis_triggers {
        if lacks(&t.component, |c| c.redis.is_some()) {
            problems.push(anyhow::anyhow!(
                "component {:?} has a Redis trigger but does not export fermyon:spin/inbound-redis",
                t.component
            ));
        }
    }
    for t in &app.cron_triggers {
        if lacks(&t.component, |c| c.cron.is_some()) {
            problems.push(anyhow::anyhow!("component {:?} has a cron trigger but does not export handle-cron-event (fermyon:spin-cron/spin-cron@2.0.0)", t.component));
        }
    }
    problems.finish()
}

/// The HTTP routes (duplicates are warnings, as in Spin).
fn build_router(app: &App) -> Result<Router> {
    let (router, warnings) = Router::build(app.http_triggers.iter().filter_map(|t| {
        let component = t.component.as_deref()?;
        match &t.route {
            crate::manifest::HttpRoute::Route(r) => Some((component, r.as_str())),
            crate::manifest::HttpRoute::Private(_) => None,
        }
    }))?;
    for w in warnings {
        eprintln!("spin-host: warning: {w}");
    }
    Ok(router)
}

/// The `/.well-known/spin/info` body.
fn app_info(app: &App) -> Result<String> {
    let mut info = serde_json::Map::new();
    info.insert("name".into(), app.manifest.application.name.clone().into());
    if !app.manifest.application.version.is_empty() {
        info.insert(
            "version".into(),
            app.manifest.application.version.clone().into(),
        );
    }
    Ok(serde_json::to_string_pretty(&info)?)
}

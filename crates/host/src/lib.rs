//! `spin-host`: a local, Spin-compatible host for `spin.toml` applications, on wasmtime.
//!
//! The crate is cut the way Spin's `factor-*` crates are: one module per capability, each linking
//! its interfaces, configuring itself from the manifest / runtime config (a `configure_app`
//! function that reports every problem at once, see `capability`), and building per-instance
//! state. Trigger modules sit on top (`runtime` imports none), and outbound HTTP reaches the HTTP
//! trigger only through the `outbound_http::LocalDispatch` the trigger hands it.

pub mod bindings;
pub mod capability;
pub mod component_build;
pub mod files;
pub mod host_requirements;
pub mod http_guard;
pub mod key_value;
pub mod limits;
pub mod manifest;
pub mod outbound_http;
pub mod outbound_networking;
pub mod redis;
pub mod routes;
pub mod runtime;
pub mod runtime_config;
pub mod sqlite;
pub mod state;
pub mod stdio;
pub mod trigger_cron;
pub mod trigger_http;
pub mod trigger_redis;
pub mod unsupported;
pub mod variables;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};

/// Arguments of `spin-host up`.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Manifest paths (or directories containing `spin.toml`): one app, or several apps of one
    /// directory run as one (see [`manifest::App::load_all`]).
    pub from: Vec<PathBuf>,
    /// Listen address.
    pub listen: String,
    /// Runtime config file.
    pub runtime_config_file: Option<PathBuf>,
    /// State directory (default `.spin` next to the manifest).
    pub state_dir: Option<PathBuf>,
    /// Run build commands first.
    pub build: bool,
    /// The host's limits.
    pub limits: Limits,
}

/// Every limit the host enforces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Each instance's memory and run time.
    pub instance: limits::InstanceLimits,
    /// The HTTP trigger's body size, timeouts and connections.
    pub http: limits::HttpLimits,
}

/// `spin-host up`: loads, optionally builds, and runs the app until SIGINT/SIGTERM.
pub fn up(opts: UpOptions) -> Result<()> {
    let app = manifest::App::load_all(&manifest_paths(&opts.from))?;
    if opts.build {
        component_build::build_all(&app)?;
    }
    let runtime_config = runtime_config::RuntimeConfig::load(opts.runtime_config_file.as_deref())?;
    let state_dir = opts
        .state_dir
        .clone()
        .or_else(|| runtime_config.state_dir.clone())
        .unwrap_or_else(|| app.base_dir.join(".spin"));

    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = std::env::var("SPIN_HOST_WORKER_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
    {
        builder.worker_threads(n);
    }
    let rt = builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let _guard = rt.enter();

    let listen_addr = resolve_listen(&opts.listen)?;
    let vars = variables::AppVariables::resolve(&app, &variables::env_provider())?;
    host_requirements::check(&app, &vars)?;
    let redis_subs = trigger_redis::Subscriptions::resolve(&app, &vars)?;
    let cron_jobs = trigger_cron::jobs(&app)?;
    let mut runtime = runtime::AppRuntime::load(runtime::LoadOptions {
        app,
        state_dir,
        runtime_config,
        engine: runtime::EngineOptions {
            instance: opts.limits.instance,
            ..runtime::EngineOptions::default()
        },
    })?;
    runtime.http_limits = opts.limits.http;
    let runtime = Arc::new(runtime);

    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen_addr)
            .await
            .with_context(|| format!("cannot listen on {listen_addr}"))?;
        let local = listener.local_addr()?;
        let _ = runtime.listen_addr.set(local);
        let redis = trigger_redis::start(runtime.clone(), redis_subs).await?;
        tokio::spawn(redis);
        tokio::spawn(trigger_cron::run(runtime.clone(), cron_jobs));
        {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            writeln!(out, "Serving http://{local}")?;
            out.flush()?;
        }
        tokio::select! {
            r = trigger_http::serve(runtime.clone(), listener) => r,
            r = shutdown_signal() => r,
        }
    })?;
    // Do not wait for in-flight guest tasks: exit promptly and cleanly.
    rt.shutdown_background();
    trigger_http::flush_request_log();
    Ok(())
}

/// Each `--from`: a manifest, or a directory holding `spin.toml`.
fn manifest_paths(from: &[PathBuf]) -> Vec<PathBuf> {
    let file = |f: &PathBuf| {
        if f.is_dir() {
            f.join("spin.toml")
        } else {
            f.clone()
        }
    };
    from.iter().map(file).collect()
}

fn resolve_listen(listen: &str) -> Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    let addrs: Vec<SocketAddr> = listen
        .to_socket_addrs()
        .with_context(|| format!("invalid --listen address {listen:?} (expected host:port)"))?
        .collect();
    // `localhost` resolves to both families; prefer IPv4 like `spin up`'s default 127.0.0.1.
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .with_context(|| format!("--listen address {listen:?} resolves to nothing"))
}

async fn shutdown_signal() -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

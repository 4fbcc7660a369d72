//! In-process cost of one trivial request: route + fresh `Store` + instantiate (pooling allocator,
//! `InstancePre`) + `wasi:http/incoming-handler.handle` + reading the response body, without any
//! socket or HTTP parsing.
//!
//!     cargo bench -p spin-host --bench in_process [-- <component.wasm> [iterations]]
//!
//! Default component: `target/wasm32-wasip2/release/hello.wasm` (built by
//! `./scripts/build-wasm.sh`). Prints mean / p50 / p99 per request, single-threaded (one request
//! at a time), then the throughput of 32 concurrent in-process requests on the runtime's workers.
//! It also prints a breakdown (store creation, instantiation, handler call) to show where the
//! time goes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};

use spin_host::manifest::App;
use spin_host::runtime::{AppRuntime, EngineOptions, LoadOptions};
use spin_host::runtime_config::RuntimeConfig;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn request() -> http::Request<Empty<Bytes>> {
    http::Request::builder()
        .uri("/hello")
        .header("host", "localhost:3000")
        .body(Empty::new())
        .expect("static request")
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let wasm = args
        .first()
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/wasm32-wasip2/release/hello.wasm"));
    let iterations: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(20_000);
    anyhow::ensure!(
        wasm.is_file(),
        "{} not found: run ./scripts/build-wasm.sh first",
        wasm.display()
    );

    let manifest = format!(
        "spin_manifest_version = 2\n[application]\nname = \"bench\"\n[[trigger.http]]\nroute = \"/...\"\ncomponent = \"hello\"\n[component.hello]\nsource = {:?}\n",
        wasm.display().to_string()
    );
    let state = std::env::temp_dir().join(format!("spin-host-bench-{}", std::process::id()));
    let app = App::parse(&manifest, root.clone())?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let _guard = rt.enter();
    let mut runtime = AppRuntime::load(LoadOptions {
        app,
        state_dir: state.clone(),
        runtime_config: RuntimeConfig::default(),
        engine: EngineOptions::default(),
    })?;
    runtime.log_requests = false;
    let runtime = Arc::new(runtime);
    let client: SocketAddr = "127.0.0.1:50000".parse()?;

    rt.block_on(async {
        let one = |rt: Arc<AppRuntime>| async move {
            let resp = spin_host::trigger_http::handle(&rt, request(), client).await;
            anyhow::ensure!(resp.status() == 200, "status {}", resp.status());
            let body = resp.into_body().collect().await.context("body")?.to_bytes();
            anyhow::ensure!(!body.is_empty(), "empty body");
            Ok(())
        };

        for _ in 0..2_000 {
            one(runtime.clone()).await?;
        }

        // Sequential latency.
        let mut times = Vec::with_capacity(iterations);
        let started = Instant::now();
        for _ in 0..iterations {
            let t = Instant::now();
            one(runtime.clone()).await?;
            times.push(t.elapsed());
        }
        let total = started.elapsed();
        times.sort();
        println!(
            "in-process, sequential: {iterations} requests, mean {:.1} us, p50 {:.1} us, p99 {:.1} us ({:.0} req/s on one task)",
            us(total) / iterations as f64,
            us(percentile(&times, 0.50)),
            us(percentile(&times, 0.99)),
            iterations as f64 / total.as_secs_f64()
        );

        // Concurrent throughput: 32 tasks, like wrk -c32.
        let per_task = iterations / 32;
        let started = Instant::now();
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let rt2 = runtime.clone();
                tokio::spawn(async move {
                    for _ in 0..per_task {
                        let resp = spin_host::trigger_http::handle(&rt2, request(), client).await;
                        let _ = resp.into_body().collect().await;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await?;
        }
        let elapsed = started.elapsed();
        println!(
            "in-process, 32 concurrent: {:.0} req/s ({} workers)",
            (per_task * 32) as f64 / elapsed.as_secs_f64(),
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        );

        // Breakdown of the pieces.
        let component = runtime.component("hello").context("component")?.clone();
        let pre = component.http.clone().context("http export")?;
        let n = iterations.min(5_000);
        let t = Instant::now();
        for _ in 0..n {
            drop(runtime.new_store(&component, spin_host::state::TriggerKind::Http, None));
        }
        let store_us = us(t.elapsed()) / n as f64;
        let t = Instant::now();
        for _ in 0..n {
            let mut store = runtime.new_store(&component, spin_host::state::TriggerKind::Http, None);
            let _ = pre.instantiate_async(&mut store).await?;
        }
        let inst_us = us(t.elapsed()) / n as f64;
        println!(
            "breakdown: new store {store_us:.1} us, + instantiate {:.1} us, + handle and body {:.1} us",
            inst_us - store_us,
            us(total) / iterations as f64 - inst_us
        );
        Ok::<_, anyhow::Error>(())
    })?;
    let _ = std::fs::remove_dir_all(state);
    Ok(())
}

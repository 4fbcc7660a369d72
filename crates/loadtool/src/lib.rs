//! `shop-load`: a load tool for a running spin-shop (README, "Load tool").
//!
//! Two modes: order creators (`POST /api/orders`) and flash-sale buyers
//! (`POST /api/flash-sales/{id}/purchase`, then each ticket polled). Every simulated customer
//! has its own token ([`tokens`]). [`run`] returns the [`Report`]; the binary prints it as text
//! or JSON and the plot goes to an SVG file ([`plot`]).

pub mod cli;
pub mod flash;
pub mod http;
pub mod orders;
pub mod plot;
pub mod report;
pub mod stats;
pub mod tokens;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use hyper::Method;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

pub use cli::{Args, Mode};
pub use report::Report;

use http::{Http, Reply};
use stats::Sample;
use tokens::Minter;

/// The arguments of `argv` (its first item is the program name), as the binary parses them.
pub fn parse_args<I, T>(argv: I) -> Result<Args, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    <Args as clap::Parser>::try_parse_from(argv)
}

/// Runs the load `args` describe to its end and returns the report; the plot is written to
/// `args.plot`.
pub fn run(args: &Args) -> Result<Report> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    rt.block_on(async {
        let ctx = Arc::new(Ctx::new(args)?);
        let report = match &args.mode {
            Mode::Orders(o) => orders::run(ctx, o).await?,
            Mode::Flash(f) => flash::run(ctx, f).await?,
        };
        plot::write(&args.plot, &report)?;
        Ok(report)
    })
}

/// What every request of a run shares.
pub(crate) struct Ctx {
    pub http: Http,
    pub minter: Minter,
    admin: Option<String>,
    concurrency: usize,
    quiet: bool,
    /// Makes this run's Idempotency-Keys and default customer ids new.
    run_id: String,
    prefix: String,
    /// When the run began: samples are placed on the timeline from here.
    start: Instant,
}

impl Ctx {
    fn new(args: &Args) -> Result<Ctx> {
        if args.concurrency == 0 {
            bail!("--concurrency must be at least 1");
        }
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
        let run_id = format!("{:x}{:x}", nanos, std::process::id());
        let prefix = args
            .customer_prefix
            .clone()
            .unwrap_or_else(|| format!("load-{run_id}"));
        Ok(Ctx {
            http: Http::new(&args.base, Duration::from_secs_f64(args.timeout_secs))?,
            minter: Minter::from_file(
                &args.key,
                args.kid.as_deref(),
                &args.issuer,
                &args.audience,
            )?,
            admin: args.admin_token.as_ref().map(|t| format!("Bearer {t}")),
            concurrency: args.concurrency,
            quiet: args.quiet,
            run_id,
            prefix,
            start: Instant::now(),
        })
    }

    /// Customer ids 1..=n of this run.
    pub fn customers(&self, n: u64) -> Vec<String> {
        (1..=n).map(|i| format!("{}-{i}", self.prefix)).collect()
    }

    /// A fresh Idempotency-Key: `what` and `n` unique within the run.
    pub fn idempotency_key(&self, what: &str, n: u64) -> String {
        format!("{}-{what}-{n}", self.run_id)
    }

    /// The admin's `authorization` value, or why the step needs one.
    pub fn admin(&self, step: &str) -> Result<&str> {
        self.admin.as_deref().with_context(|| {
            format!("{step} needs the admin token (--admin-token or SPIN_VARIABLE_ADMIN_TOKEN)")
        })
    }

    pub fn sample(&self, reply: &Reply) -> Sample {
        Sample {
            at: reply.started.saturating_duration_since(self.start),
            latency: reply.latency,
            status: reply.status,
        }
    }

    /// `GET path` expecting 200 and JSON (with the admin token when there is one).
    pub async fn get_json(&self, path: &str) -> Result<Value> {
        let auth: Vec<(&str, &str)> = self
            .admin
            .iter()
            .map(|a| ("authorization", a.as_str()))
            .collect();
        let reply = self.http.send(Method::GET, path, &auth, None).await?;
        if reply.status != Some(200) {
            bail!("GET {path}: {:?} {}", reply.status, reply.text());
        }
        reply
            .json()
            .with_context(|| format!("GET {path}: not JSON"))
    }

    /// `PUT path` as the admin, expecting a 2xx.
    pub async fn admin_put(&self, path: &str, body: &Value) -> Result<()> {
        self.admin_send(Method::PUT, path, body).await
    }

    /// `POST path` as the admin, expecting a 2xx.
    pub async fn admin_post(&self, path: &str, body: &Value) -> Result<()> {
        self.admin_send(Method::POST, path, body).await
    }

    async fn admin_send(&self, method: Method, path: &str, body: &Value) -> Result<()> {
        let what = format!("{method} {path}");
        let auth = self.admin(&what)?;
        let reply = self
            .http
            .send(method, path, &[("authorization", auth)], Some(body))
            .await?;
        match reply.status {
            Some(s) if (200..300).contains(&s) => Ok(()),
            s => bail!("{what}: {s:?} {}", reply.text()),
        }
    }

    /// Sets the product's available units to `--product-stock` when asked to: created with
    /// that stock if it does not exist, else adjusted by the difference (the app changes an
    /// existing product's stock only by adjustments, never overwriting reservations).
    pub async fn setup_product(&self, sku: &str, setup: &cli::ProductSetup) -> Result<()> {
        let Some(stock) = setup.product_stock else {
            return Ok(());
        };
        let path = format!("/api/products/{sku}");
        let Ok(product) = self.get_json(&path).await else {
            let body = json!({"name": format!("Load {sku}"), "price": setup.product_price,
                "currency": setup.currency, "stock": stock});
            return self.admin_put(&path, &body).await;
        };
        let available = product["available"]
            .as_i64()
            .context("the product's available units")?;
        let delta = i64::try_from(stock)? - available;
        if delta == 0 {
            return Ok(());
        }
        let body = json!({"adjustment_id": self.idempotency_key("adjust", 0), "delta": delta,
            "reason": format!("shop-load: available set to {stock}")});
        self.admin_post(&format!("{path}/stock-adjustments"), &body)
            .await
    }

    /// Runs `f(0) .. f(total - 1)` with at most `concurrency` in flight (each its own task, so
    /// both cores work), showing progress; results in completion order.
    pub async fn drive<T, F, Fut>(&self, total: u64, what: &str, f: F) -> Result<Vec<T>>
    where
        F: Fn(u64) -> Fut,
        Fut: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let bar = self.progress(total, what);
        let done: Vec<_> = futures::stream::iter(0..total)
            .map(|i| tokio::spawn(f(i)))
            .buffer_unordered(self.concurrency)
            .inspect(|_| bar.inc(1))
            .collect()
            .await;
        bar.finish_and_clear();
        done.into_iter()
            .map(|r| r.context("a request task panicked")?)
            .collect()
    }

    fn progress(&self, total: u64, what: &str) -> ProgressBar {
        if self.quiet {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(total).with_message(what.to_owned());
        let style = ProgressStyle::with_template(
            "{msg:>10} [{elapsed_precise}] {wide_bar} {pos}/{len} (eta {eta})",
        )
        .expect("a valid progress template");
        bar.set_style(style);
        bar
    }
}

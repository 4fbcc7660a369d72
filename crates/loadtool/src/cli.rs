//! The command line (clap). `shop-load --help` lists everything.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Drives concurrent order creators or flash-sale buyers against a running spin-shop and
/// reports throughput, latency percentiles, status counts and (for a sale) whether it held:
/// sold vs quantity, buyers with two units, final stock, tickets left PENDING. Writes a
/// latency-over-time plot (SVG). Each simulated customer has its own token, signed with the
/// development key of ./scripts/up.sh unless --key names another.
#[derive(Parser, Debug, Clone)]
#[command(name = "shop-load", version)]
pub struct Args {
    /// The app's base URL (plain HTTP).
    #[arg(long, global = true, default_value = "http://127.0.0.1:3000")]
    pub base: String,
    /// Requests in flight at once.
    #[arg(long, short = 'c', global = true, default_value_t = 64)]
    pub concurrency: usize,
    /// The admin token, for setting up the product or the sale (as the app's admin_token).
    #[arg(
        long,
        global = true,
        env = "SPIN_VARIABLE_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
    /// The private key (PKCS#8 PEM; P-256 signs ES256, RSA signs RS256) that signs the
    /// customers' tokens; its public half must be in the app's auth_jwks.
    #[arg(long, global = true, default_value = ".spin/dev-jwt/es256.pem")]
    pub key: PathBuf,
    /// The key's `kid` in the app's JWKS (default: its RFC 7638 thumbprint, as
    /// `spin-shop-dev keygen` publishes it).
    #[arg(long, global = true)]
    pub kid: Option<String>,
    /// The tokens' issuer (as the app's auth_issuer).
    #[arg(long, global = true, env = "SPIN_VARIABLE_AUTH_ISSUER", default_value = devtools::DEFAULT_ISSUER)]
    pub issuer: String,
    /// The tokens' audience (as the app's auth_audience).
    #[arg(long, global = true, env = "SPIN_VARIABLE_AUTH_AUDIENCE", default_value = devtools::DEFAULT_AUDIENCE)]
    pub audience: String,
    /// Customer ids are `<prefix>-<n>`; default `load-<run id>`, new customers every run.
    #[arg(long, global = true)]
    pub customer_prefix: Option<String>,
    /// Seconds before a request without an answer counts as an error.
    #[arg(long, global = true, default_value_t = 30.0)]
    pub timeout_secs: f64,
    /// Where to write the latency-over-time plot (SVG).
    #[arg(long, global = true, default_value = "shop-load.svg")]
    pub plot: PathBuf,
    /// Print the report as JSON (for scripts) instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress bar.
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub mode: Mode,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Mode {
    /// Order creators: POST /api/orders, each with a fresh Idempotency-Key.
    Orders(OrdersArgs),
    /// Flash-sale buyers: POST /api/flash-sales/{id}/purchase, then each ticket polled until
    /// ORDERED or FAILED.
    Flash(FlashArgs),
}

#[derive(clap::Args, Debug, Clone)]
pub struct OrdersArgs {
    /// Orders to attempt in all.
    #[arg(long, short = 'n', default_value_t = 1000)]
    pub requests: u64,
    /// Distinct customers the orders come from, in turn (orders are sharded by customer).
    #[arg(long, default_value_t = 64)]
    pub customers: u64,
    /// The product ordered.
    #[arg(long, default_value = "LOAD-1")]
    pub sku: String,
    /// Units per order.
    #[arg(long, default_value_t = 1)]
    pub quantity: u64,
    #[command(flatten)]
    pub product: ProductSetup,
}

#[derive(clap::Args, Debug, Clone)]
pub struct FlashArgs {
    /// The sale's id.
    #[arg(long)]
    pub sale: String,
    /// Buyers, each a distinct customer.
    #[arg(long, default_value_t = 1000)]
    pub buyers: u64,
    /// Purchases per buyer, each under its own Idempotency-Key (more than the sale's
    /// per_user_limit probes the limit).
    #[arg(long, default_value_t = 1)]
    pub attempts: u64,
    /// Before the timed purchases, every buyer opens the sale's page signed in: one
    /// `GET /api/flash-sales/{id}` with their token, as a shop's client does while the customer
    /// waits for the sale.
    /// The app remembers each verified token, so the purchases then measure the sale without
    /// each token's first signature check (a separate figure: without this flag every purchase
    /// is its token's first request).
    #[arg(long)]
    pub signed_in: bool,
    /// Seconds to keep polling tickets still PENDING before reporting them as such.
    #[arg(long, default_value_t = 60.0)]
    pub poll_timeout_secs: f64,
    /// Create (or replace) the sale first (admin token), from the options below.
    #[arg(long)]
    pub create: bool,
    /// The sale's product (with --create; else the sale's own).
    #[arg(long)]
    pub sku: Option<String>,
    /// Units on sale (with --create).
    #[arg(long, default_value_t = 100)]
    pub quantity: u64,
    /// Units one customer may buy (with --create).
    #[arg(long, default_value_t = 1)]
    pub per_user_limit: u64,
    /// The flash price in minor units (with --create).
    #[arg(long, default_value_t = 1)]
    pub price: i64,
    /// The sale opens this many seconds from now (with --create; negative: already open).
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    pub starts_in_secs: i64,
    /// The sale lasts this many seconds (with --create).
    #[arg(long, default_value_t = 3600)]
    pub lasts_secs: i64,
    #[command(flatten)]
    pub product: ProductSetup,
}

/// Optionally create the product first (admin token).
#[derive(clap::Args, Debug, Clone)]
pub struct ProductSetup {
    /// PUT the product first with this stock (admin token).
    #[arg(long)]
    pub product_stock: Option<u64>,
    /// The product's catalog price in minor units (with --product-stock).
    #[arg(long, default_value_t = 100)]
    pub product_price: i64,
    /// ISO 4217 currency of the product and the sale.
    #[arg(long, default_value = "EUR")]
    pub currency: String,
}

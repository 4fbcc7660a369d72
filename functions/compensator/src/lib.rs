//! The `compensator` component: the relay of every context's outbox and the shop's heartbeat.
//!
//! One run (the cron trigger's `handle-cron-event`, or `POST /api/compensator/run` with the
//! internal token, for platforms without a cron trigger, e.g. a Kubernetes CronJob on SpinKube):
//! 1. relays each context's outbox (every shard of `orders`, `payments`): due rows are claimed with a lease,
//!    sent to their Redis stream in one round trip per topic, stamped; failures back off
//!    (jittered, exponential) and are dead-lettered after too many attempts;
//! 2. purges delivered outbox rows, inbox rows and receiver dead letters past their retention
//!    (variables);
//! 3. trims every stream below the oldest entry one of its consumer groups has not acknowledged
//!    (never by length), and warns about a group more than `stream_lag_threshold` behind;
//! 4. reconciles the flash sales (units taken in Redis against flash orders in SQLite; a ticket
//!    PENDING too long gets its order request appended again: `flash.rs`);
//! 5. rings every doorbell, so each receiver drains what waited in its stream (one that was down
//!    when its messages were sent included) and runs its context's sweep (expiries, abandoned
//!    claims, the stock TTL).
//!
//! It decides nothing about orders, payments or stock: the rules stay in each context. It relays
//! outboxes generically, which is why it alone is granted every context's database label (and
//! touches only the shared `outbox` and `inbox` tables there). It holds no `*.spin.internal`
//! grant: Spin refuses service chaining on a cron trigger.
//!
//! Every step runs even when an earlier one fails. A run that did something or failed logs one
//! line (and a warning per lagging stream); an idle one logs a heartbeat at most once a minute.

mod dead_letters;
mod flash;
mod ops;
mod run;
mod streams;

use shop_adapter::body::Incoming;
use shop_adapter::health;
use shop_adapter::respond::finish;
use shop_domain::shard::ShardCount;
use spin_sdk::http::{IncomingRequest, Params, Request, Response, Router};
use spin_sdk::http_component;

mod cron {
    wit_bindgen::generate!({
        world: "spin-cron",
        path: "../../wit/cron.wit",
    });
}

use cron::fermyon::spin_cron::cron_types::{Error as CronError, Metadata};

const COMPONENT: &str = "compensator";

/// One database whose outbox (and inbox) this component serves: a context's label, or one of the
/// order context's shards (`orders-shard0` .. `orders-shard{N-1}`, N the variable `order_shards`).
#[derive(Debug, Clone)]
pub struct Db {
    /// The context it belongs to (`orders`, `payments`).
    pub context: &'static str,
    /// Its SQLite label.
    pub label: String,
}

/// Every database with an outbox: each shard of the order context, then `payments`. A bad
/// `order_shards` is an error naming it (the caller reports it; payments are still served).
pub fn databases() -> (Vec<Db>, Option<String>) {
    let payments = Db {
        context: "payments",
        label: "payments".to_owned(),
    };
    let shards = shop_adapter::vars::get("order_shards")
        .map_err(|e| e.to_string())
        .and_then(|raw| ShardCount::parse(&raw).map_err(|e| e.to_string()));
    match shards {
        Ok(count) => {
            let mut dbs: Vec<Db> = count
                .all()
                .map(|i| Db {
                    context: "orders",
                    label: i.label(),
                })
                .collect();
            dbs.push(payments);
            (dbs, None)
        }
        Err(e) => (vec![payments], Some(format!("variable order_shards: {e}"))),
    }
}

/// [`databases`] for the operator routes: a bad `order_shards` is a 503 naming it.
pub fn all_databases() -> Result<Vec<Db>, shop_adapter::Problem> {
    match databases() {
        (dbs, None) => Ok(dbs),
        (_, Some(e)) => {
            eprintln!("compensator: MISCONFIGURED {e}");
            Err(
                shop_adapter::Problem::unavailable(format!("misconfigured: {e}"))
                    .with("variable", "order_shards"),
            )
        }
    }
}

/// The topics whose receivers each run wakes.
pub const TOPICS: [&str; 2] = ["payments", "orders"];

struct Compensator;

impl cron::Guest for Compensator {
    fn handle_cron_event(_metadata: Metadata) -> Result<(), CronError> {
        let report = run::run_once();
        run::log(&report);
        match report.errors.is_empty() {
            true => Ok(()),
            false => Err(CronError::Other(report.errors.join("; "))),
        }
    }
}

cron::export!(Compensator with_types_in cron);

/// No route of this component takes a body: none is ever read.
#[http_component]
async fn handle(incoming: IncomingRequest) -> Response {
    let req = Incoming::new(incoming).without_body();
    let mut router = Router::new();
    router.get("/api/health/compensator", |_req: Request, _p| {
        health_route()
    });
    router.post("/api/compensator/run", |req: Request, _p| {
        finish(run::handle(&req))
    });
    router.get("/api/ops/outbox", |req: Request, _p| {
        finish(ops::outbox(&req))
    });
    router.get("/api/ops/dead-letters", |req: Request, _p| {
        finish(dead_letters::list(&req))
    });
    router.post(
        "/api/ops/dead-letters/:id/replay",
        |req: Request, p: Params| {
            finish(dead_letters::replay(&req, p.get("id").unwrap_or_default()))
        },
    );
    router.get("/api/ops/streams", |req: Request, _p| {
        finish(streams::route(&req))
    });
    router.get("/api/ops/flash-sales", |req: Request, _p| {
        finish(flash::route(&req))
    });
    router.any("/*", |req: Request, _p| ops::no_route(&req));
    router.handle_async(req).await
}

/// Every shard of the order context answers (a bad `order_shards` fails the check).
fn sqlite_orders() -> anyhow::Result<()> {
    let dbs = all_databases().map_err(|p| anyhow::anyhow!("{}", p.detail))?;
    dbs.iter()
        .filter(|d| d.context == "orders")
        .try_for_each(|d| health::sqlite_check(&d.label))
}

fn health_route() -> Response {
    let redis = || -> anyhow::Result<()> {
        let url = shop_adapter::vars::get("redis_url")?;
        health::redis_check(&url)
    };
    health::report(
        COMPONENT,
        &[
            ("sqlite_orders", &sqlite_orders),
            ("sqlite_payments", &|| health::sqlite_check("payments")),
            ("redis", &redis),
        ],
    )
}

/// The admin token, required by the operator routes.
fn require_admin(req: &Request) -> Result<(), shop_adapter::Problem> {
    shop_adapter::auth::require_admin(req)
}

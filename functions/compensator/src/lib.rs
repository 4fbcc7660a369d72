//! The `compensator` component: the relay of every context's outbox and the shop's heartbeat.
//!
//! One run (the cron trigger's `handle-cron-event`, or `POST /api/compensator/run` with the
//! internal token, for platforms without a cron trigger, e.g. a Kubernetes CronJob on SpinKube):
//! 1. relays each context's outbox (`orders`, `payments`): due rows are claimed with a lease,
//!    sent to their Redis stream in one round trip per topic, stamped; failures back off
//!    (jittered, exponential) and are dead-lettered after too many attempts;
//! 2. purges delivered outbox rows, inbox rows and receiver dead letters past their retention
//!    (variables);
//! 3. trims every stream below the oldest entry one of its consumer groups has not acknowledged
//!    (never by length), and warns about a group more than `stream_lag_threshold` behind;
//! 4. rings every doorbell, so each receiver drains what waited in its stream (one that was down
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
mod ops;
mod run;
mod streams;

use shop_adapter::body::Incoming;
use shop_adapter::health;
use shop_adapter::respond::finish;
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

/// The databases whose outbox (and inbox) this component serves, one per context.
pub const LABELS: [&str; 2] = ["orders", "payments"];

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
    router.any("/*", |req: Request, _p| ops::no_route(&req));
    router.handle_async(req).await
}

fn health_route() -> Response {
    let redis = || -> anyhow::Result<()> {
        let url = spin_sdk::variables::get("redis_url")?;
        health::redis_check(&url)
    };
    health::report(
        COMPONENT,
        &[
            ("sqlite_orders", &|| health::sqlite_check("orders")),
            ("sqlite_payments", &|| health::sqlite_check("payments")),
            ("redis", &redis),
        ],
    )
}

/// The admin token, required by the operator routes.
fn require_admin(req: &Request) -> Result<(), shop_adapter::Problem> {
    shop_adapter::auth::require_admin(req)
}

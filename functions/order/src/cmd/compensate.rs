//! `POST /api/orders/compensate`: finish what a crash or a failed call left half-done in the
//! order component, over HTTP (an operator's or a scheduler's direct repair; the event path does
//! the same without it). Needs the internal token: it only does what is owed anyway,
//! idempotently, but nobody outside should be able to make the shop run repair batches.
//!
//! 1. Abandoned claims: an `in-progress` Idempotency-Key claim older than [`sweep::ABANDON_AFTER_MS`]
//!    belongs to a request that died between claiming and writing, and whose client did not
//!    retry. The claim moves to `failed` with the next attempt (guarded by its claim token, so a
//!    client retry that retook it first wins) and its reservation is recorded as owed. A later
//!    retry of that request reserves afresh under the next attempt's id.
//! 2. Expired orders: a PENDING_PAYMENT order past `expires_at` becomes EXPIRED (state machine
//!    `Expire`, `WHERE version = <read version>`) with an `OrderExpired` outbox message and its
//!    reservation recorded as owed, in one transaction. Its stock reservation expires at the same
//!    time, so the order could not be fulfilled any more.
//! 3. Owed releases: every open `pending_releases` row (a cancel or a failed order write whose
//!    release call failed, steps 1 and 2) is released at the stock component (idempotent; an
//!    unknown reservation counts as released) and closed.
//! 4. Outbox relay: unpublished outbox messages (the ones this pass just wrote included) are
//!    published to the order events channel, oldest first, at least once ([`shop_adapter::outbox::relay`]).
//!
//! Every step runs in each shard of the order context (a claim, an order, its releases and its
//! outbox rows all live in their customer's shard).

use serde::Serialize;
use shop_adapter::respond::{json, HandlerResult};
use spin_sdk::http::Request;
use spin_sdk::sqlite::Connection;

use crate::db::{self, OrUnavailable};
use crate::settle::{self, Released};
use crate::store::{outbox, releases};
use crate::trace::Trace;
use crate::{ids, sweep};

/// Open releases retried per call; the next call takes the rest.
const BATCH: i64 = sweep::BATCH;

#[derive(Default, Serialize)]
struct Report {
    abandoned_claims: u64,
    expired_orders: u64,
    released: u64,
    still_pending: i64,
    published: u64,
    unpublished: i64,
}

pub async fn handle(req: &Request) -> HandlerResult {
    shop_adapter::auth::require_internal(req)?;
    let trace = Trace::of(req);
    let shards = db::open_all()?;
    let swept = sweep::sweep(&shards, ids::now_ms()).or_unavailable("sweep orders")?;
    let mut written = vec![Vec::new(); shards.conns.len()];
    swept.add_to(&mut written);
    let mut report = Report {
        abandoned_claims: swept.abandoned_count(),
        expired_orders: swept.expired_count(),
        ..Report::default()
    };
    // Steps 3 and 4 shard by shard: each release and each outbox row lives in one shard.
    for (conn, written) in shards.iter().zip(&written) {
        outbox::publish(conn, written, outbox::Ring::Now);
        report.released += release_owed(conn, &trace).await?;
        report.still_pending +=
            releases::count_open(conn).or_unavailable("count pending releases")?;
        let (published, unpublished) = relay(conn).or_unavailable("relay outbox")?;
        report.published += published;
        report.unpublished += unpublished;
    }
    Ok(json(200, &report))
}

/// Step 3: retries up to a batch of open releases; how many are done.
async fn release_owed(conn: &Connection, trace: &Trace) -> Result<u64, shop_adapter::Problem> {
    let open = releases::open(conn, BATCH).or_unavailable("read pending releases")?;
    let mut released = 0;
    for rid in &open {
        match settle::release(conn, rid, trace.traceparent()).await {
            Released::Done => released += 1,
            Released::NotClosed(e) => return Err(e).or_unavailable("close pending release"),
            Released::Failed => {}
        }
    }
    Ok(released)
}

/// Step 4: the shared relay over this shard's outbox; (sent, still undelivered).
fn relay(conn: &Connection) -> anyhow::Result<(u64, i64)> {
    let url = shop_adapter::vars::get("redis_url")?;
    let opts = shop_adapter::outbox::RelayOptions::default();
    let report = shop_adapter::outbox::relay(conn, &url, &opts)?;
    let stats = shop_adapter::outbox::stats(conn)?;
    Ok((report.sent, stats.pending))
}

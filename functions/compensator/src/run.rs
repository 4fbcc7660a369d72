//! One compensator run: relay every outbox, purge what is past retention, trim every stream
//! below what its consumer groups have acknowledged, reconcile the flash sales, ring every
//! doorbell.

use serde::Serialize;
use shop_adapter::outbox::{self, RelayOptions, RelayReport};
use shop_adapter::respond::{json, HandlerResult};
use spin_sdk::http::Request;
use spin_sdk::sqlite::Connection;

use crate::streams::{self, StreamReport};
use crate::TOPICS;

/// What one run did, per context.
#[derive(Debug, Default, Serialize)]
pub struct RunReport {
    /// Per database label (each shard of the order context on its own: `orders-shard0`, ...).
    pub relayed: Vec<(String, RelayReport)>,
    pub purged_outbox: i64,
    pub purged_inbox: i64,
    /// Receiver dead letters past their retention.
    pub purged_dead_letters: i64,
    pub streams: Vec<StreamReport>,
    /// Flash sale reconciliation: per sale, units taken in Redis against orders in SQLite.
    pub flash: Vec<crate::flash::SaleReport>,
    /// A warning per stream group more than `stream_lag_threshold` entries behind.
    pub warnings: Vec<String>,
    pub doorbells: u32,
    pub errors: Vec<String>,
}

/// The key whose presence says a heartbeat was logged less than a minute ago (by any instance).
const HEARTBEAT_KEY: &str = "compensator:heartbeat";
const HEARTBEAT_EVERY_MS: &str = "60000";

impl RunReport {
    fn relayed_sum(&self, f: fn(&RelayReport) -> u64) -> u64 {
        self.relayed.iter().map(|(_, r)| f(r)).sum()
    }

    fn trimmed(&self) -> u64 {
        self.streams.iter().map(|s| s.trimmed).sum()
    }

    /// Whether the run changed something, failed or found a stream behind: worth its own log
    /// line. Ringing the doorbells is every run's routine and does not count.
    pub fn eventful(&self) -> bool {
        let relayed = self.relayed_sum(|r| r.claimed + r.sent + r.failed + r.dead_lettered);
        relayed > 0
            || self.purged_outbox > 0
            || self.purged_inbox > 0
            || self.purged_dead_letters > 0
            || self.trimmed() > 0
            || !self.warnings.is_empty()
            || !self.errors.is_empty()
    }

    /// The one log line of a run.
    pub fn log_line(&self) -> String {
        let sum = |f| self.relayed_sum(f);
        format!(
            "claimed {} sent {} failed {} dead-lettered {} purged {}+{}+{} trimmed {} doorbells {} errors {}",
            sum(|r| r.claimed),
            sum(|r| r.sent),
            sum(|r| r.failed),
            sum(|r| r.dead_lettered),
            self.purged_outbox,
            self.purged_inbox,
            self.purged_dead_letters,
            self.trimmed(),
            self.doorbells,
            if self.errors.is_empty() {
                "none".to_owned()
            } else {
                self.errors.join("; ")
            }
        )
    }
}

/// `POST /api/compensator/run` (internal token: the platform's scheduler holds it): one run,
/// its report as JSON (200 even when a step failed: the report says which).
pub fn handle(req: &Request) -> HandlerResult {
    shop_adapter::auth::require_internal(req)?;
    let report = run_once();
    log(&report);
    Ok(json(200, &report))
}

/// Logs a run: its warnings, and its line when it was eventful; an idle run (every 15 s) only as
/// a heartbeat at most once a minute, so what matters is not buried.
pub fn log(report: &RunReport) {
    for w in &report.warnings {
        eprintln!("compensator: WARNING {w}");
    }
    if report.eventful() {
        eprintln!("compensator: {}", report.log_line());
    } else if heartbeat_due() {
        eprintln!(
            "compensator: idle (heartbeat, at most once a minute): {}",
            report.log_line()
        );
    }
}

/// Whether no heartbeat was logged in the last minute, by this or any other instance (the
/// component keeps no state: the mark is a Redis key with a one-minute expiry, taken with
/// `SET NX`). When Redis cannot tell, the run failed and was logged anyway; log rather than
/// stay silent.
fn heartbeat_due() -> bool {
    let taken = (|| -> anyhow::Result<bool> {
        let conn = spin_sdk::redis::Connection::open(&shop_adapter::vars::get("redis_url")?)?;
        let args = [HEARTBEAT_KEY, "1", "NX", "PX", HEARTBEAT_EVERY_MS]
            .map(|a| spin_sdk::redis::RedisParameter::Binary(a.as_bytes().to_vec()));
        let reply = conn.execute("SET", &args)?;
        Ok(!matches!(
            reply.first(),
            None | Some(spin_sdk::redis::RedisResult::Nil)
        ))
    })();
    taken.unwrap_or(true)
}

/// Hours from a variable, or `default` when it is unset or unreadable.
pub fn hours(name: &str, default: i64) -> i64 {
    shop_adapter::vars::get(name)
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|h| *h > 0)
        .unwrap_or(default)
}

pub fn run_once() -> RunReport {
    let mut report = RunReport::default();
    let url = match shop_adapter::vars::get("redis_url") {
        Ok(u) => u,
        Err(e) => {
            report.errors.push(format!("variable redis_url: {e}"));
            return report;
        }
    };
    let now = shop_adapter::ids::now_ms();
    let outbox_keep = hours("outbox_retention_hours", 24 * 7) * 3_600_000;
    let inbox_keep = hours("inbox_retention_hours", 24 * 30) * 3_600_000;
    let (dbs, misconfigured) = crate::databases();
    report.errors.extend(misconfigured);
    for db in dbs {
        let label = db.label.as_str();
        let step = (|| -> anyhow::Result<()> {
            let conn = Connection::open(label)?;
            if !has_outbox(&conn)? {
                return Ok(()); // the context has not migrated yet: nothing was ever written
            }
            let relayed = outbox::relay(&conn, &url, &RelayOptions::default())?;
            report.relayed.push((label.to_owned(), relayed));
            report.purged_outbox += outbox::purge(&conn, now - outbox_keep)?;
            if has_table(&conn, "inbox")? {
                report.purged_inbox += shop_adapter::inbox::purge(&conn, now - inbox_keep)?;
            }
            Ok(())
        })();
        if let Err(e) = step {
            report.errors.push(format!("{label}: {e:#}"));
        }
    }
    match crate::dead_letters::purge(&url, now) {
        Ok(n) => report.purged_dead_letters = n,
        Err(e) => report.errors.push(format!("dead letters: {e:#}")),
    }
    let threshold = streams::lag_threshold();
    let (trimmed, errors) = streams::trim_all(&url, threshold);
    report.warnings = streams::warnings(&trimmed, threshold);
    report.streams = trimmed;
    report.errors.extend(errors);
    // Before the ring: a request appended again here is drained by the receiver it wakes.
    let (flash, errors) = crate::flash::reconcile(&url, true);
    crate::flash::log(&flash);
    report.flash = flash;
    report.errors.extend(errors);
    ring(&url, &mut report);
    report
}

/// Wakes every receiver, asking for its context's periodic sweep too; a failure is reported, the
/// others still ring.
fn ring(url: &str, report: &mut RunReport) {
    let conn = match spin_sdk::redis::Connection::open(url) {
        Ok(c) => c,
        Err(e) => return report.errors.push(format!("redis: {e}")),
    };
    for topic in TOPICS {
        match conn.publish(&outbox::doorbell(topic), shop_adapter::receiver::SWEEP) {
            Ok(()) => report.doorbells += 1,
            Err(e) => report.errors.push(format!("doorbell {topic}: {e}")),
        }
    }
}

fn has_outbox(conn: &Connection) -> anyhow::Result<bool> {
    has_table(conn, "outbox")
}

pub fn has_table(conn: &Connection, name: &str) -> anyhow::Result<bool> {
    let rows = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
        &[spin_sdk::sqlite::Value::Text(name.to_owned())],
    )?;
    Ok(!rows.rows.is_empty())
}

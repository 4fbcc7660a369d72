//! Stream retention: publishing never trims a stream (a length limit ignores consumer groups and
//! would delete what a receiver that is down has not read). Each compensator run trims every
//! stream below the oldest entry any of its consumer groups has not acknowledged (and keeps the
//! last `stream_retention_minutes` whatever their state, for an operator to read), reports where
//! each group stands, and warns about a group that is more than a threshold behind.
//!
//! - [`trim_all`]: the run's step (`trim_stream.lua`, one atomic step per stream).
//! - `GET /api/ops/streams` (admin token, [`route`]): the same report, trimming nothing.

use serde::Serialize;
use serde_json::json;
use shop_adapter::outbox::stream_key;
use shop_adapter::redis::{run, Script};
use shop_adapter::respond::{json, HandlerResult};
use shop_adapter::Problem;
use spin_sdk::http::Request;
use spin_sdk::redis::Connection;

/// The topics whose streams the shop keeps: `orders` (read by stock), `payments`, `stock` and
/// `flash` (read by the order context).
pub const STREAM_TOPICS: [&str; 4] = ["orders", "payments", "stock", "flash"];

/// Entries are kept at least this long (minutes), acknowledged or not, unless the variable
/// `stream_retention_minutes` says otherwise: recent traffic stays readable for an operator.
const DEFAULT_RETENTION_MINUTES: u64 = 10;

/// A group more than this many entries behind (undelivered + unacknowledged) is reported, unless
/// the variable `stream_lag_threshold` says otherwise.
const DEFAULT_LAG_THRESHOLD: u64 = 10_000;

const TRIM: Script = Script {
    name: "trim_stream",
    source: include_str!("../lua/trim_stream.lua"),
};

/// Whether a pass over a stream deletes what every group is done with (and is older than
/// `keep_ms`), or only reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    Trim { keep_ms: u64 },
    ReportOnly,
}

/// One stream after a pass.
#[derive(Debug, Serialize)]
pub struct StreamReport {
    pub stream: String,
    /// Entries left in the stream.
    pub length: u64,
    /// Entries this pass deleted.
    pub trimmed: u64,
    pub groups: Vec<GroupReport>,
    /// Some group (or, with no group at all, nobody) has more than the threshold unread.
    pub behind: bool,
}

/// Where one consumer group of a stream stands.
#[derive(Debug, Serialize)]
pub struct GroupReport {
    pub group: String,
    /// Entries not yet delivered to the group (`None`: Redis cannot tell).
    pub lag: Option<u64>,
    /// Entries delivered and not acknowledged.
    pub pending: u64,
    /// Entries the group has not acknowledged: `lag + pending` (the stream's length when the
    /// lag is unknown, an upper bound).
    pub unacknowledged: u64,
    /// Age of the oldest pending entry.
    pub oldest_pending_age_ms: Option<u64>,
    /// Age of the oldest entry the group has not acknowledged (pending or not yet delivered).
    pub oldest_unread_age_ms: Option<u64>,
}

/// The lag threshold of this run: the variable, or the default when it is unset or not a
/// positive number.
pub fn lag_threshold() -> u64 {
    number("stream_lag_threshold")
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_LAG_THRESHOLD)
}

/// How long entries are kept at least, in ms: the variable (0 allowed), or the default when it
/// is unset or not a number.
fn retention_ms() -> u64 {
    let minutes = number("stream_retention_minutes").unwrap_or(DEFAULT_RETENTION_MINUTES);
    minutes.saturating_mul(60_000)
}

fn number(variable: &str) -> Option<u64> {
    let value = shop_adapter::vars::get(variable).ok()?;
    value.trim().parse::<u64>().ok()
}

/// The run's step: trims every stream; the reports, and an error per stream that failed.
pub fn trim_all(url: &str, threshold: u64) -> (Vec<StreamReport>, Vec<String>) {
    let conn = match Connection::open(url) {
        Ok(c) => c,
        Err(e) => return (Vec::new(), vec![format!("streams: redis: {e}")]),
    };
    let (mut reports, mut errors) = (Vec::new(), Vec::new());
    let trim = Pass::Trim {
        keep_ms: retention_ms(),
    };
    for topic in STREAM_TOPICS {
        match pass(&conn, &stream_key(topic), trim, threshold) {
            Ok(r) => reports.push(r),
            Err(e) => errors.push(format!("trim {}: {e:#}", stream_key(topic))),
        }
    }
    (reports, errors)
}

/// `GET /api/ops/streams` (admin token): every stream's length and groups, trimming nothing.
pub fn route(req: &Request) -> HandlerResult {
    crate::require_admin(req)?;
    let threshold = lag_threshold();
    let report = (|| -> anyhow::Result<Vec<StreamReport>> {
        let conn = Connection::open(&shop_adapter::vars::get("redis_url")?)?;
        STREAM_TOPICS
            .iter()
            .map(|t| pass(&conn, &stream_key(t), Pass::ReportOnly, threshold))
            .collect()
    })();
    match report {
        Ok(streams) => Ok(json(
            200,
            &json!({ "lag_threshold": threshold, "streams": streams }),
        )),
        Err(e) => {
            eprintln!("compensator: GET /api/ops/streams: {e:#}");
            Err(Problem::unavailable("the stream store cannot be read"))
        }
    }
}

/// One stream through `trim_stream.lua`.
fn pass(
    conn: &Connection,
    stream: &str,
    pass: Pass,
    threshold: u64,
) -> anyhow::Result<StreamReport> {
    let (trim, keep_ms) = match pass {
        Pass::Trim { keep_ms } => ("1", keep_ms.to_string()),
        Pass::ReportOnly => ("0", "0".to_owned()),
    };
    let flat = run(conn, &TRIM, &[stream], &[trim, &keep_ms])?;
    parse(stream, &flat, threshold)
}

/// The script's flat reply: `now_ms, length, trimmed, n`, then `n` groups of five fields.
fn parse(stream: &str, flat: &[String], threshold: u64) -> anyhow::Result<StreamReport> {
    let head = flat
        .get(..4)
        .ok_or_else(|| anyhow::anyhow!("short reply {flat:?}"))?;
    let num = |s: &str| s.parse::<u64>().map_err(|e| anyhow::anyhow!("{s:?}: {e}"));
    let (now, length, trimmed, n) = (
        num(&head[0])?,
        num(&head[1])?,
        num(&head[2])?,
        num(&head[3])?,
    );
    let rest = &flat[4..];
    anyhow::ensure!(rest.len() as u64 == n * 5, "reply of {n} groups: {flat:?}");
    let age = |s: &str| -> anyhow::Result<Option<u64>> {
        Ok(match s {
            "" => None,
            ms => Some(now.saturating_sub(num(ms)?)),
        })
    };
    let mut groups = Vec::new();
    for g in rest.chunks_exact(5) {
        let lag = match g[1].as_str() {
            "" => None,
            l => Some(num(l)?),
        };
        let pending = num(&g[2])?;
        groups.push(GroupReport {
            group: g[0].clone(),
            lag,
            pending,
            unacknowledged: lag.map_or(length, |l| l + pending),
            oldest_pending_age_ms: age(&g[3])?,
            oldest_unread_age_ms: age(&g[4])?,
        });
    }
    let behind = match groups.is_empty() {
        true => length > threshold,
        false => groups.iter().any(|g| g.unacknowledged > threshold),
    };
    Ok(StreamReport {
        stream: stream.to_owned(),
        length,
        trimmed,
        groups,
        behind,
    })
}

/// The warning lines of the streams that are behind, one per group over `threshold` (or one for
/// a stream no group reads yet).
pub fn warnings(reports: &[StreamReport], threshold: u64) -> Vec<String> {
    let mut lines = Vec::new();
    for r in reports.iter().filter(|r| r.behind) {
        if r.groups.is_empty() {
            lines.push(format!(
                "{}: {} entries and no consumer group (its receiver never ran; nothing is trimmed), over the threshold {threshold}",
                r.stream, r.length
            ));
        }
        for g in r.groups.iter().filter(|g| g.unacknowledged > threshold) {
            let lag = g.lag.map_or("unknown".to_owned(), |l| l.to_string());
            lines.push(format!(
                "{}: group {} has {} entries not acknowledged (lag {lag}, pending {}, oldest unread {} s old), over the threshold {threshold}; the stream keeps them",
                r.stream,
                g.group,
                g.unacknowledged,
                g.pending,
                g.oldest_unread_age_ms.unwrap_or(0) / 1000
            ));
        }
    }
    lines
}

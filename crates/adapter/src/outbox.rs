//! The transactional outbox: how every cross-context message leaves its sender.
//!
//! 1. [`append`] inside the transaction that makes the change (same commit, so never lost).
//! 2. Fast path, right after the commit: [`publish_now`] appends the rows to their Redis stream
//!    (`events:<topic>`) and rings the topic's doorbell (`doorbell:<topic>`), on which Spin's
//!    Redis trigger wakes the receiver. It does not stamp the rows: that would be one more SQLite
//!    write transaction (an fsync) per request. Best effort: a failure leaves the row for the
//!    relay.
//! 3. Relay, on every compensator run: [`relay`] claims due rows with a lease, sends them in one
//!    round trip per topic, stamps them, and backs off (jittered, exponential) on failure; after
//!    [`RelayOptions::max_attempts`] a row is dead-lettered until an operator replays it.
//!    `publish.lua` remembers sent message ids for [`SENT_MEMORY_SECONDS`], so the relay stamps a
//!    row the fast path already sent without appending it again.
//!
//! Delivery is at least once (a row stamped only after the memory ran out is sent again);
//! receivers drop duplicates by `message_id` through their inbox. Publishing never trims a
//! stream (a length limit would delete what a receiver that is down has not read, after its row
//! was stamped as sent): the compensator trims each stream below what every consumer group of
//! it has acknowledged.

use serde::Serialize;
use shop_domain::messages::{self, Envelope, Topic};
use spin_sdk::sqlite::{Connection, RowResult, Value};

use crate::ids;
use crate::redis::Script;
use crate::sqlite::{changes, text_or_null, Tx};

/// The outbox table; a context lists it among its migrations.
pub const MIGRATION_SQL: &str = include_str!("../sql/outbox.sql");

/// How long the relay leaves a fresh row to its request's fast path before sending it itself.
pub const FAST_PATH_GRACE_MS: i64 = 5_000;

/// How long `publish.lua` remembers a sent message id: far longer than the fast path's grace
/// (5 s) plus a few compensator runs (every 15 s), so the relay does not send a fast-path row
/// again; short enough that the memory stays small: one key (~90 bytes) per message sent in the
/// window, ~55 MB at a sustained 1,000 messages/s (an hour would be ~330 MB).
pub const SENT_MEMORY_SECONDS: &str = "600";

/// `publish.lua`, which defines `publish(keys, argv)`: for a script of a function that sends a
/// batch in the same step as its own work (with [`publish_call`]'s keys and arguments).
pub const PUBLISH_LUA: &str = include_str!("../lua/publish.lua");

const PUBLISH: Script = Script {
    name: "publish",
    source: concat!(
        include_str!("../lua/publish.lua"),
        "\nreturn publish(KEYS, ARGV)\n"
    ),
};

/// The keys and arguments of `publish(keys, argv)` that send `rows` of `topic` (the others are
/// left out), ringing the doorbell or not (`ring`).
pub fn publish_call<'r>(
    topic: &str,
    rows: &'r [Outgoing],
    ring: Ring,
) -> ([String; 2], Vec<std::borrow::Cow<'r, str>>) {
    let ring = if ring == Ring::Now { "1" } else { "0" };
    let mut args: Vec<std::borrow::Cow<'r, str>> = vec![
        SENT_MEMORY_SECONDS.into(),
        doorbell(topic).into(),
        DOORBELL_PENDING_MS.into(),
        ring.into(),
    ];
    for r in rows.iter().filter(|r| r.topic == topic) {
        args.push(r.message_id.as_str().into());
        args.push(r.envelope.as_str().into());
    }
    ([stream_key(topic), doorbell_marks(topic)], args)
}

/// The Redis stream of a topic.
pub fn stream_key(topic: &str) -> String {
    format!("events:{topic}")
}

/// The pub/sub channel that wakes the receivers of a topic (Spin's Redis trigger).
pub fn doorbell(topic: &str) -> String {
    format!("doorbell:{topic}")
}

/// The mark that a ring of the topic's doorbell is on its way to consumer group `group` and not
/// yet answered by its receiver's last read: while every group's mark is set, publishing appends
/// without ringing again (publish.lua, drain.lua). One per group, so a group that finished its
/// drain is rung for while another is still draining.
pub fn doorbell_pending(topic: &str, group: &str) -> String {
    format!("doorbell:pending:{topic}:{group}")
}

/// The set of a topic's pending marks ([`doorbell_pending`]), one per group that ever drained:
/// publish.lua sets each one that is absent.
pub fn doorbell_marks(topic: &str) -> String {
    format!("doorbell:marks:{topic}")
}

/// How long a pending mark lives at most: the delay a receiver that dies mid-drain can add
/// before the next message rings again.
pub const DOORBELL_PENDING_MS: &str = "2000";

/// Whether sending a message wakes its topic's receivers now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ring {
    /// Ring the doorbell (unless a ring is already pending): a receiver acts on it.
    Now,
    /// Append only: no receiver needs it soon. Receivers read it, in order, with the next
    /// ring: a later message's, or the compensator's periodic one.
    Later,
}

/// One message to append: a value of its topic's type (`shop_domain::messages`), so its kind
/// and payload are the contract's, never spelled by hand.
pub struct Message<'a> {
    topic: &'static str,
    kind: String,
    payload: serde_json::Value,
    pub aggregate_id: &'a str,
    pub trace_id: Option<&'a str>,
    pub now_ms: i64,
}

impl<'a> Message<'a> {
    /// `message` about `aggregate_id`, sent at `now_ms`.
    pub fn new<T: Topic>(
        message: &T,
        aggregate_id: &'a str,
        trace_id: Option<&'a str>,
        now_ms: i64,
    ) -> anyhow::Result<Self> {
        let (kind, payload) = messages::encode(message)?;
        Ok(Message {
            topic: T::TOPIC,
            kind,
            payload,
            aggregate_id,
            trace_id,
            now_ms,
        })
    }

    /// A message of kind `kind` (the domain's constant for it) whose payload a Lua script
    /// fills in the step that decides it (`purchase.lua`): sent with an empty payload.
    pub fn filled_by_script<T: Topic>(
        kind: &'static str,
        aggregate_id: &'a str,
        now_ms: i64,
    ) -> Self {
        Message {
            topic: T::TOPIC,
            kind: kind.to_owned(),
            payload: serde_json::Value::Object(Default::default()),
            aggregate_id,
            trace_id: None,
            now_ms,
        }
    }

    /// The topic it is sent on.
    pub fn topic(&self) -> &'static str {
        self.topic
    }
}

/// Inserts `msg` with the next sequence number of its aggregate; returns the message id. Call it
/// inside the transaction of the change the message announces.
pub fn append(conn: &Connection, msg: &Message<'_>) -> anyhow::Result<String> {
    Ok(append_outgoing(conn, msg)?.message_id)
}

/// [`append`], returning the row as the fast path sends it ([`publish_call`] in the sender's
/// own script), so the sender does not read back the row it just wrote.
pub fn append_outgoing(conn: &Connection, msg: &Message<'_>) -> anyhow::Result<Outgoing> {
    let message_id = ids::sortable_id("msg_");
    let created_at = ids::rfc3339(msg.now_ms);
    let rows = conn.execute(
        "INSERT INTO outbox (message_id, topic, type, aggregate_id, seq, payload, trace_id, created_at, next_attempt_ms)
         SELECT ?, ?, ?, ?, COALESCE(MAX(seq), 0) + 1, ?, ?, ?, ? FROM outbox WHERE aggregate_id = ?
         RETURNING seq",
        &[
            txt(&message_id),
            txt(msg.topic),
            txt(&msg.kind),
            txt(msg.aggregate_id),
            txt(&serde_json::to_string(&msg.payload)?),
            text_or_null(msg.trace_id),
            txt(&created_at),
            Value::Integer(msg.now_ms + FAST_PATH_GRACE_MS),
            txt(msg.aggregate_id),
        ],
    )?;
    let seq = rows.rows.first().and_then(|r| r.get::<i64>(0));
    let seq = seq.ok_or_else(|| anyhow::anyhow!("outbox insert returned no seq"))?;
    Outgoing::build(message_id, msg, seq, &created_at)
}

impl Outgoing {
    /// A message of a context that keeps no outbox table (stock, whose store is Redis): its
    /// sender appends it in the same script as the change it announces (one atomic step, so it
    /// is never lost either). One message per aggregate (`seq` 1); receivers dedupe by its id.
    pub fn unstored(msg: &Message<'_>) -> anyhow::Result<Outgoing> {
        let created_at = ids::rfc3339(msg.now_ms);
        Outgoing::build(ids::sortable_id("msg_"), msg, 1, &created_at)
    }

    fn build(
        message_id: String,
        msg: &Message<'_>,
        seq: i64,
        created_at: &str,
    ) -> anyhow::Result<Outgoing> {
        let envelope = Envelope {
            message_id: message_id.clone(),
            topic: msg.topic.to_owned(),
            kind: msg.kind.clone(),
            aggregate_id: msg.aggregate_id.to_owned(),
            seq,
            payload: msg.payload.clone(),
            trace_id: msg.trace_id.map(str::to_owned),
            created_at: created_at.to_owned(),
        };
        Ok(Outgoing {
            topic: msg.topic.to_owned(),
            attempts: 0,
            envelope: serde_json::to_string(&envelope)?,
            message_id,
        })
    }
}

const COLUMNS: &str =
    "message_id, topic, type, aggregate_id, seq, payload, trace_id, created_at, attempts";

/// A row on its way to a stream.
pub struct Outgoing {
    pub message_id: String,
    pub topic: String,
    attempts: i64,
    envelope: String,
}

/// A stored row as it is sent. The payload was written by [`append`] from a typed message, so
/// it is JSON; one that is not (the database was edited by hand) is sent as the string it is,
/// never as a default: its receiver cannot read it and dead-letters it with the reason.
fn outgoing(row: &RowResult) -> anyhow::Result<Outgoing> {
    let s = |i: usize| row.get::<&str>(i).unwrap_or_default();
    let payload =
        serde_json::from_str(s(5)).unwrap_or_else(|_| serde_json::Value::String(s(5).to_owned()));
    let envelope = Envelope {
        message_id: s(0).to_owned(),
        topic: s(1).to_owned(),
        kind: s(2).to_owned(),
        aggregate_id: s(3).to_owned(),
        seq: row.get::<i64>(4).unwrap_or_default(),
        payload,
        trace_id: row.get::<&str>(6).map(str::to_owned),
        created_at: s(7).to_owned(),
    };
    Ok(Outgoing {
        message_id: envelope.message_id.clone(),
        topic: envelope.topic.clone(),
        attempts: row.get::<i64>(8).unwrap_or_default(),
        envelope: serde_json::to_string(&envelope)?,
    })
}

/// Appends `rows` to their streams, one round trip per topic. Returns, per row, whether its
/// stream took it (and the error otherwise).
fn send(
    redis: &spin_sdk::redis::Connection,
    rows: &[Outgoing],
    ring: Ring,
) -> Vec<Result<(), String>> {
    let mut topics: Vec<&str> = rows.iter().map(|r| r.topic.as_str()).collect();
    topics.sort_unstable();
    topics.dedup();
    let mut outcome: Vec<Result<(), String>> = vec![Ok(()); rows.len()];
    for topic in topics {
        let ([key, pending], args) = publish_call(topic, rows, ring);
        let args: Vec<&str> = args.iter().map(|a| a.as_ref()).collect();
        // The same step appends and (unless a ring is pending) rings the doorbell.
        let result = crate::redis::run(redis, &PUBLISH, &[&key, &pending], &args).map(|_| ());
        if let Err(e) = result {
            let err = format!("XADD {key}: {e}");
            for (i, r) in rows.iter().enumerate() {
                if r.topic == topic {
                    outcome[i] = Err(err.clone());
                }
            }
        }
    }
    outcome
}

/// Fast path after a commit: sends the rows `message_ids` that are still unpublished (without
/// stamping them: the relay does, after their grace, without sending them again), ringing the
/// doorbell or not (`ring`). Returns how many were sent. An error leaves them to the relay.
pub fn publish_now(
    conn: &Connection,
    redis_url: &str,
    message_ids: &[String],
    ring: Ring,
) -> anyhow::Result<usize> {
    if message_ids.is_empty() {
        return Ok(0);
    }
    let marks = vec!["?"; message_ids.len()].join(", ");
    let params: Vec<Value> = message_ids.iter().map(|m| txt(m)).collect();
    let rows = conn.execute(
        &format!(
            "SELECT {COLUMNS} FROM outbox WHERE message_id IN ({marks}) AND published_at IS NULL ORDER BY rowid"
        ),
        &params,
    )?;
    let rows = rows
        .rows
        .iter()
        .map(outgoing)
        .collect::<anyhow::Result<Vec<_>>>()?;
    if rows.is_empty() {
        return Ok(0);
    }
    let redis = crate::redis::connect(redis_url)?;
    if let Some(Err(e)) = send(&redis, &rows, ring).into_iter().find(Result::is_err) {
        anyhow::bail!("{e}");
    }
    Ok(rows.len())
}

/// How the relay runs.
#[derive(Debug, Clone, Copy)]
pub struct RelayOptions {
    /// Rows claimed per batch (one transaction to claim, one to stamp).
    pub batch: i64,
    /// Batches per run at most; a run stops earlier when a batch comes back short.
    pub max_batches: u32,
    /// How long a claim protects its rows from another run.
    pub lease_ms: i64,
    /// Failed sends before a row is dead-lettered.
    pub max_attempts: i64,
    /// First retry delay; doubled per attempt (capped at 10 minutes), with up to 50% jitter.
    pub backoff_ms: i64,
}

impl Default for RelayOptions {
    fn default() -> Self {
        RelayOptions {
            batch: 500,
            max_batches: 40,
            lease_ms: 30_000,
            max_attempts: 10,
            backoff_ms: 1_000,
        }
    }
}

/// What one relay run did.
#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct RelayReport {
    pub claimed: u64,
    pub sent: u64,
    pub failed: u64,
    pub dead_lettered: u64,
}

/// Sends every due row (not published, not dead, due, not leased by another run), batch by
/// batch. Two runs at once never hold the same row: the claim is one `BEGIN IMMEDIATE`
/// transaction that only takes unleased rows, and every stamp is guarded by the run's token.
pub fn relay(
    conn: &Connection,
    redis_url: &str,
    opts: &RelayOptions,
) -> anyhow::Result<RelayReport> {
    let mut report = RelayReport::default();
    let mut redis = None;
    for _ in 0..opts.max_batches {
        let (token, rows) = claim(conn, opts)?;
        if rows.is_empty() {
            break;
        }
        report.claimed += rows.len() as u64;
        let redis = match &redis {
            Some(r) => r,
            None => redis.insert(spin_sdk::redis::Connection::open(redis_url)?),
        };
        let outcome = send(redis, &rows, Ring::Now);
        settle(conn, &token, &rows, &outcome, opts, &mut report)?;
        if (rows.len() as i64) < opts.batch {
            break;
        }
    }
    Ok(report)
}

/// Leases up to `opts.batch` due rows to a fresh token; returns the token and the rows.
fn claim(conn: &Connection, opts: &RelayOptions) -> anyhow::Result<(String, Vec<Outgoing>)> {
    let token = ids::random_id("lease_");
    let now = ids::now_ms();
    let tx = Tx::begin(conn)?;
    conn.execute(
        "UPDATE outbox SET lease_token = ?, lease_until_ms = ?
         WHERE message_id IN (
           SELECT message_id FROM outbox
           WHERE published_at IS NULL AND dead_at IS NULL AND next_attempt_ms <= ?
             AND (lease_until_ms IS NULL OR lease_until_ms < ?)
           ORDER BY next_attempt_ms, rowid LIMIT ?)",
        &[
            txt(&token),
            Value::Integer(now + opts.lease_ms),
            Value::Integer(now),
            Value::Integer(now),
            Value::Integer(opts.batch),
        ],
    )?;
    tx.commit()?;
    let rows = conn.execute(
        &format!("SELECT {COLUMNS} FROM outbox WHERE lease_token = ? ORDER BY rowid"),
        &[txt(&token)],
    )?;
    let rows = rows
        .rows
        .iter()
        .map(outgoing)
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((token, rows))
}

/// Stamps what was sent and schedules (or dead-letters) what was not, in one transaction, only
/// for rows still leased to `token`.
fn settle(
    conn: &Connection,
    token: &str,
    rows: &[Outgoing],
    outcome: &[Result<(), String>],
    opts: &RelayOptions,
    report: &mut RelayReport,
) -> anyhow::Result<()> {
    let now = ids::now_ms();
    let stamp = txt(&ids::rfc3339(now));
    let tx = Tx::begin(conn)?;
    for (row, result) in rows.iter().zip(outcome) {
        match result {
            Ok(()) => {
                conn.execute(
                    "UPDATE outbox SET published_at = ?, lease_token = NULL, lease_until_ms = NULL
                     WHERE message_id = ? AND lease_token = ? AND published_at IS NULL",
                    &[stamp.clone(), txt(&row.message_id), txt(token)],
                )?;
                report.sent += changes(conn)? as u64;
            }
            Err(e) => {
                let attempts = row.attempts + 1;
                let dead = attempts >= opts.max_attempts;
                conn.execute(
                    "UPDATE outbox SET attempts = ?, next_attempt_ms = ?, last_error = ?, dead_at = ?,
                            lease_token = NULL, lease_until_ms = NULL
                     WHERE message_id = ? AND lease_token = ?",
                    &[
                        Value::Integer(attempts),
                        Value::Integer(now + backoff_ms(opts.backoff_ms, attempts)),
                        txt(e),
                        if dead { stamp.clone() } else { Value::Null },
                        txt(&row.message_id),
                        txt(token),
                    ],
                )?;
                report.failed += 1;
                report.dead_lettered += u64::from(dead);
            }
        }
    }
    tx.commit()
}

/// `base * 2^(attempts-1)`, capped at 10 minutes, plus up to 50% random jitter so that rows
/// that failed together do not retry together.
pub fn backoff_ms(base: i64, attempts: i64) -> i64 {
    let exp = base.saturating_mul(1_i64 << attempts.clamp(1, 20).saturating_sub(1));
    let capped = exp.min(600_000);
    capped + ids::random_below((capped / 2).max(1) as u64) as i64
}

/// Counts by delivery state and the age of the oldest undelivered row.
#[derive(Debug, Serialize)]
pub struct Stats {
    pub pending: i64,
    pub published: i64,
    pub dead: i64,
    pub oldest_pending_created_at: Option<String>,
}

/// [`Stats`] of this database's outbox.
pub fn stats(conn: &Connection) -> anyhow::Result<Stats> {
    let rows = conn.execute(
        "SELECT
           (SELECT COUNT(*) FROM outbox WHERE published_at IS NULL AND dead_at IS NULL),
           (SELECT COUNT(*) FROM outbox WHERE published_at IS NOT NULL),
           (SELECT COUNT(*) FROM outbox WHERE dead_at IS NOT NULL AND published_at IS NULL),
           (SELECT MIN(created_at) FROM outbox WHERE published_at IS NULL AND dead_at IS NULL)",
        &[],
    )?;
    let row = rows.rows.first();
    let int = |i| row.and_then(|r| r.get::<i64>(i)).unwrap_or(0);
    Ok(Stats {
        pending: int(0),
        published: int(1),
        dead: int(2),
        oldest_pending_created_at: row.and_then(|r| r.get::<&str>(3)).map(str::to_owned),
    })
}

/// A dead-lettered row.
#[derive(Debug, Serialize)]
pub struct DeadLetter {
    pub message_id: String,
    pub topic: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub aggregate_id: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub dead_at: String,
    pub created_at: String,
}

/// Dead-lettered rows, oldest first (at most `limit`).
pub fn dead_letters(conn: &Connection, limit: i64) -> anyhow::Result<Vec<DeadLetter>> {
    let rows = conn.execute(
        "SELECT message_id, topic, type, aggregate_id, attempts, last_error, dead_at, created_at
         FROM outbox WHERE dead_at IS NOT NULL AND published_at IS NULL ORDER BY dead_at, rowid LIMIT ?",
        &[Value::Integer(limit)],
    )?;
    Ok(rows
        .rows
        .iter()
        .map(|r| {
            let s = |i: usize| r.get::<&str>(i).unwrap_or_default().to_owned();
            DeadLetter {
                message_id: s(0),
                topic: s(1),
                kind: s(2),
                aggregate_id: s(3),
                attempts: r.get::<i64>(4).unwrap_or_default(),
                last_error: r.get::<&str>(5).map(str::to_owned),
                dead_at: s(6),
                created_at: s(7),
            }
        })
        .collect())
}

/// Puts a dead-lettered row back in line (attempts reset, due now). `false` if no such dead row.
pub fn replay(conn: &Connection, message_id: &str) -> anyhow::Result<bool> {
    conn.execute(
        "UPDATE outbox SET dead_at = NULL, attempts = 0, next_attempt_ms = 0, last_error = NULL
         WHERE message_id = ? AND dead_at IS NOT NULL AND published_at IS NULL",
        &[txt(message_id)],
    )?;
    Ok(changes(conn)? == 1)
}

/// Deletes delivered rows published before `before_ms`; returns how many.
pub fn purge(conn: &Connection, before_ms: i64) -> anyhow::Result<i64> {
    conn.execute(
        "DELETE FROM outbox WHERE published_at IS NOT NULL AND published_at < ?",
        &[txt(&ids::rfc3339(before_ms))],
    )?;
    changes(conn)
}

fn txt(s: &str) -> Value {
    Value::Text(s.to_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_schema_is_one_table_and_its_indexes() {
        let stmts = crate::sqlite::statements(super::MIGRATION_SQL);
        assert!(stmts[0].starts_with("CREATE TABLE IF NOT EXISTS outbox"));
        assert!(stmts[1..].iter().all(|s| s.starts_with("CREATE INDEX")));
    }
}

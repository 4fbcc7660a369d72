//! The receiving end of a topic: drain a consumer group of the topic's stream, apply each
//! message, acknowledge what was applied. Spin's Redis trigger only wakes the receiver (the
//! doorbell); the stream is the queue, so a message published while no receiver ran waits for
//! the next wake-up instead of being lost.
//!
//! A message whose handler fails stays pending and is retried when it has been idle for
//! [`DrainOptions::min_idle_ms`]; after [`DrainOptions::max_deliveries`] it is moved to the
//! dead-letter stream `dead:<topic>:<group>` (with the error) and acknowledged, so one poison
//! message cannot block the group.

use serde::{Deserialize, Serialize};
use spin_sdk::redis::{Connection, RedisParameter};

use crate::outbox::{doorbell, doorbell_pending, stream_key};
use crate::redis::Script;

const DRAIN: Script = Script {
    name: "drain",
    source: include_str!("../lua/drain.lua"),
};

/// The doorbell payload of the compensator's periodic ring: besides draining, the receiver runs
/// its context's sweep (expiries, abandoned claims, retention, the TTL sweep). A request's fast
/// path rings with an empty payload: drain only, so a burst of messages does not run a burst of
/// sweeps (each one a write transaction competing with the messages' own).
pub const SWEEP: &[u8] = b"sweep";

/// Whether a doorbell asks for the periodic sweep.
pub fn wants_sweep(doorbell: &[u8]) -> bool {
    doorbell == SWEEP
}

/// A message as it travels in a stream entry (field `m`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    pub message_id: String,
    pub topic: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub aggregate_id: String,
    pub seq: i64,
    pub payload: serde_json::Value,
    pub trace_id: Option<String>,
    pub created_at: String,
}

/// How a drain runs.
#[derive(Debug, Clone, Copy)]
pub struct DrainOptions {
    /// Entries taken per round trip.
    pub batch: u32,
    /// Round trips per drain at most (the next doorbell takes the rest).
    pub max_batches: u32,
    /// How long an entry handed to another consumer may stay unacknowledged before it is taken
    /// over (that consumer died mid-batch).
    pub min_idle_ms: u64,
    /// Deliveries before a failing message is dead-lettered.
    pub max_deliveries: u32,
}

impl Default for DrainOptions {
    fn default() -> Self {
        DrainOptions {
            batch: 200,
            max_batches: 50,
            min_idle_ms: 30_000,
            max_deliveries: 5,
        }
    }
}

/// How a receiver applies what it drains: message by message, optionally inside one
/// transaction per drained batch (so a burst costs one commit, not one per message).
pub trait Apply {
    /// Before each batch (e.g. `BEGIN IMMEDIATE`).
    fn begin_batch(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
    /// One message, idempotent by `message_id`. An error must leave no effect of this message
    /// (e.g. a savepoint rolled back): it is not acknowledged and comes again.
    fn apply(&mut self, env: &Envelope) -> anyhow::Result<()>;
    /// After each batch (e.g. `COMMIT`). An error acknowledges nothing of the batch: every
    /// message comes again, and the inbox drops what was applied before.
    fn commit_batch(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
    /// When the batch cannot finish (the stream failed mid-batch): undo it (e.g. `ROLLBACK`).
    /// Nothing of it is acknowledged.
    fn abort_batch(&mut self) {}
}

/// A closure applies each message on its own (no batch transaction).
impl<F: FnMut(&Envelope) -> anyhow::Result<()>> Apply for F {
    fn apply(&mut self, env: &Envelope) -> anyhow::Result<()> {
        self(env)
    }
}

/// What one drain did.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct DrainReport {
    pub read: u64,
    pub applied: u64,
    pub failed: u64,
    pub dead_lettered: u64,
}

/// The counts of two drains together (a receiver that drains two topics reports one line).
impl std::ops::AddAssign for DrainReport {
    fn add_assign(&mut self, other: DrainReport) {
        self.read += other.read;
        self.applied += other.applied;
        self.failed += other.failed;
        self.dead_lettered += other.dead_lettered;
    }
}

/// Drains `topic` for consumer group `group`, applying each message with `apply`. `apply` must
/// be idempotent by `message_id` (inbox in the same transaction as the effect): an entry may be
/// delivered again after a crash between the effect and the acknowledgement.
pub fn drain(
    redis_url: &str,
    topic: &str,
    group: &str,
    opts: &DrainOptions,
    mut apply: impl Apply,
) -> anyhow::Result<DrainReport> {
    let conn = Connection::open(redis_url)?;
    let mut report = DrainReport::default();
    let on = Group {
        conn: &conn,
        topic,
        group,
        opts,
    };
    let result = rounds(&on, &mut report, &mut apply);
    if result.is_err() {
        // This drain held the doorbell's pending mark: without it the next message rings again
        // (otherwise what was appended meanwhile would wait for the compensator's ring).
        let _ = conn.del(&[doorbell_pending(topic)]);
    }
    result.map(|()| report)
}

/// What a drain works on: one consumer group of one topic, over one connection.
struct Group<'a> {
    conn: &'a Connection,
    topic: &'a str,
    group: &'a str,
    opts: &'a DrainOptions,
}

/// The drain's rounds of reads (see [`drain`]).
fn rounds(on: &Group<'_>, report: &mut DrainReport, apply: &mut impl Apply) -> anyhow::Result<()> {
    let (conn, topic, group, opts) = (on.conn, on.topic, on.group, on.opts);
    let (stream, pending) = (stream_key(topic), doorbell_pending(topic));
    let (count, idle) = (opts.batch.to_string(), opts.min_idle_ms.to_string());
    // The doorbell's pending mark stays set while this drain runs, so publishers append without
    // ringing again; the last read deletes it atomically with reading (drain.lua), after which
    // new messages ring again. A drain that reads less than a batch makes one more, last read.
    let mut last = false;
    for _ in 0..opts.max_batches {
        let args = [group, group, &count, &idle, if last { "1" } else { "0" }];
        let flat = crate::redis::run(conn, &DRAIN, &[&stream, &pending], &args)?;
        let full = flat.len() / 3 >= opts.batch as usize;
        apply_batch(on, &flat, report, apply)?;
        match (full, last) {
            (false, true) => return Ok(()),
            (false, false) => last = true,
            (true, _) => last = false,
        }
    }
    // Out of rounds with entries possibly left: ring, so the next wake-up goes on.
    conn.publish(&doorbell(topic), b"")?;
    Ok(())
}

/// Applies one drained batch (the flat `id, deliveries, envelope` triples) and acknowledges
/// what was applied or dead-lettered.
fn apply_batch(
    on: &Group<'_>,
    flat: &[String],
    report: &mut DrainReport,
    apply: &mut impl Apply,
) -> anyhow::Result<()> {
    if flat.is_empty() {
        return Ok(());
    }
    apply.begin_batch()?;
    match apply_entries(on, flat, report, apply) {
        Ok(acks) => {
            apply.commit_batch()?;
            ack(on.conn, &stream_key(on.topic), on.group, &acks)
        }
        Err(e) => {
            apply.abort_batch();
            Err(e)
        }
    }
}

/// Applies each entry of a batch; the ids to acknowledge (applied, or dead-lettered).
fn apply_entries(
    on: &Group<'_>,
    flat: &[String],
    report: &mut DrainReport,
    apply: &mut impl Apply,
) -> anyhow::Result<Vec<String>> {
    let Group {
        conn,
        topic,
        group,
        opts,
    } = *on;
    let stream = stream_key(topic);
    let mut acks = Vec::new();
    for entry in flat.chunks_exact(3) {
        let (id, deliveries, raw) = (&entry[0], &entry[1], &entry[2]);
        report.read += 1;
        let result = serde_json::from_str::<Envelope>(raw)
            .map_err(anyhow::Error::from)
            .and_then(|env| apply.apply(&env));
        match result {
            Ok(()) => {
                report.applied += 1;
                acks.push(id.clone());
            }
            Err(e) => {
                report.failed += 1;
                eprintln!("receiver {group}: {stream} entry {id} failed: {e:#}");
                if deliveries.parse::<u32>().unwrap_or(1) >= opts.max_deliveries {
                    dead_letter(conn, topic, group, raw, &format!("{e:#}"))?;
                    report.dead_lettered += 1;
                    acks.push(id.clone());
                }
            }
        }
    }
    Ok(acks)
}

fn ack(conn: &Connection, stream: &str, group: &str, ids: &[String]) -> anyhow::Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let mut params = vec![bin(stream), bin(group)];
    params.extend(ids.iter().map(|i| bin(i)));
    conn.execute("XACK", &params)?;
    Ok(())
}

/// The dead-letter stream of a group: what it could not apply, with the last error.
pub fn dead_letter_stream(topic: &str, group: &str) -> String {
    format!("dead:{topic}:{group}")
}

fn dead_letter(
    conn: &Connection,
    topic: &str,
    group: &str,
    raw: &str,
    error: &str,
) -> anyhow::Result<()> {
    let params = [
        bin(&dead_letter_stream(topic, group)),
        bin("*"),
        bin("m"),
        bin(raw),
        bin("error"),
        bin(error),
    ];
    conn.execute("XADD", &params)?;
    Ok(())
}

fn bin(s: &str) -> RedisParameter {
    RedisParameter::Binary(s.as_bytes().to_vec())
}

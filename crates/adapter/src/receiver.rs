//! The receiving end of a topic: drain a consumer group of the topic's stream, apply each
//! message, acknowledge what was applied. Spin's Redis trigger only wakes the receiver (the
//! doorbell); the stream is the queue, so a message published while no receiver ran waits for
//! the next wake-up instead of being lost.
//!
//! A message whose handler fails stays pending and is retried when it has been idle for
//! [`DrainOptions::min_idle_ms`]; after [`DrainOptions::max_deliveries`] it is moved to the
//! dead-letter stream `dead:<topic>:<group>` (with the error and the delivery count) and
//! acknowledged, in one step, so one poison message cannot block the group; an operator lists
//! and replays it ([`crate::dead_letter`]). Only a message's own failure counts: one whose batch
//! transaction the database rolled back is applied again on its own, never dead-lettered for
//! another's fault. Acknowledging and dead-lettering happen after the batch's transaction ended,
//! so a slow or failing Redis never holds the database's write lock.

use serde::Serialize;
use spin_sdk::redis::Connection;

use crate::dead_letter;
use crate::outbox::{doorbell, doorbell_marks, doorbell_pending, stream_key};
use crate::redis::Script;

const DRAIN: Script = Script {
    name: "drain",
    source: include_str!("../lua/drain.lua"),
};

const SETTLE: Script = Script {
    name: "settle",
    source: include_str!("../lua/settle.lua"),
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

/// A message as it travels in a stream entry (field `m`): the contract's one envelope.
pub use shop_domain::messages::{Envelope, Unreadable};

/// What a handler returns for a message it is backing off from (its next attempt is not due):
/// the entry stays pending as it is, neither acknowledged nor counted as a failed delivery, and
/// is taken again after [`DrainOptions::min_idle_ms`]. A handler that returns it keeps its own
/// count of attempts and ends them with [`GiveUp`] (the delivery count also grows with every
/// take, due or not).
#[derive(Debug)]
pub struct NotDue;

impl std::fmt::Display for NotDue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not due yet")
    }
}

impl std::error::Error for NotDue {}

/// What a handler returns when its own attempts at a message are spent: dead-lettered now with
/// the reason, whatever the delivery count.
#[derive(Debug)]
pub struct GiveUp(pub String);

impl std::fmt::Display for GiveUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GiveUp {}

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
    /// No new round is started after this long (then the drain rings for the next wake-up):
    /// well inside what a platform lets one instance run (Fermyon Cloud ends a handler after
    /// 10 s, spin-host after 30 s by default), even for a receiver that drains two topics, so a
    /// drain ends on its own terms instead of being killed between two batches.
    pub budget: std::time::Duration,
}

impl Default for DrainOptions {
    fn default() -> Self {
        DrainOptions {
            batch: 200,
            max_batches: 50,
            min_idle_ms: 30_000,
            max_deliveries: 5,
            budget: std::time::Duration::from_secs(4),
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
    /// Whether the database rolled the batch's whole transaction back (after an error of
    /// [`Apply::apply`]): then that error is the transaction's, not the message's, and nothing
    /// of the batch can be committed.
    fn rolled_back(&self) -> bool {
        false
    }
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
    /// Left pending for later: their handler's next attempt is not due ([`NotDue`]).
    pub deferred: u64,
}

/// The counts of two drains together (a receiver that drains two topics reports one line).
impl std::ops::AddAssign for DrainReport {
    fn add_assign(&mut self, other: DrainReport) {
        self.read += other.read;
        self.applied += other.applied;
        self.failed += other.failed;
        self.dead_lettered += other.dead_lettered;
        self.deferred += other.deferred;
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
        let _ = conn.del(&[doorbell_pending(topic, group)]);
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
    let (stream, pending) = (stream_key(topic), doorbell_pending(topic, group));
    let marks = doorbell_marks(topic);
    let (count, idle) = (opts.batch.to_string(), opts.min_idle_ms.to_string());
    // The doorbell's pending mark stays set while this drain runs, so publishers append without
    // ringing again; the last read deletes it atomically with reading (drain.lua), after which
    // new messages ring again. A drain that reads less than a batch makes one more, last read.
    let mut last = false;
    let started = std::time::Instant::now();
    for _ in 0..opts.max_batches {
        if started.elapsed() >= opts.budget {
            break;
        }
        let args = [group, group, &count, &idle, if last { "1" } else { "0" }];
        let flat = crate::redis::run(conn, &DRAIN, &[&stream, &pending, &marks], &args)?;
        let full = flat.len() / 3 >= opts.batch as usize;
        apply_batch(on, &flat, report, apply)?;
        match (full, last) {
            (false, true) => return Ok(()),
            (false, false) => last = true,
            (true, _) => last = false,
        }
    }
    // Out of rounds or time with entries possibly left: ring, so the next wake-up goes on.
    conn.publish(&doorbell(topic), b"")?;
    Ok(())
}

/// One drained entry: its stream id, how often it was handed out (this time included), and its
/// raw envelope.
struct Entry<'a> {
    id: &'a str,
    deliveries: u32,
    raw: &'a str,
}

/// What became of one entry in a batch.
enum Outcome {
    /// Applied and committed: acknowledged.
    Applied,
    /// Its own failure (its effects undone; the batch's transaction intact, or its own
    /// transaction rolled back while alone in it): counted as a failed delivery, dead-lettered
    /// at [`DrainOptions::max_deliveries`].
    Failed(String),
    /// Every entry of the batch failed alone in its own transaction: the database is failing,
    /// not the messages. Neither acknowledged nor dead-lettered: it comes again.
    Interrupted,
    /// Unreadable (not an envelope, a kind its topic does not have, a payload that does not
    /// fit its type): dead-lettered at once with the reason, since no retry can change it.
    Unreadable(String),
    /// Its handler backs off ([`NotDue`]): left pending, not counted against it.
    NotDue,
    /// Its handler's attempts are spent ([`GiveUp`]): dead-lettered at once with the reason.
    GaveUp(String),
}

/// Applies one drained batch (the flat `id, deliveries, envelope` triples), then, once every
/// transaction of it has ended, acknowledges what was applied and dead-letters what failed too
/// often (settle.lua): no Redis call is made while the batch's transaction is open.
///
/// When the database rolls the batch's transaction back (a failure that undoes the whole
/// transaction, or its commit fails), each entry is applied again in a transaction of its own,
/// so the entries that did nothing wrong are applied and only a message whose own transaction
/// fails is counted against; nothing is counted against a message for another's rollback.
fn apply_batch(
    on: &Group<'_>,
    flat: &[String],
    report: &mut DrainReport,
    apply: &mut impl Apply,
) -> anyhow::Result<()> {
    let entries: Vec<Entry<'_>> = flat
        .chunks_exact(3)
        .map(|e| Entry {
            id: &e[0],
            deliveries: e[1].parse().unwrap_or(1),
            raw: &e[2],
        })
        .collect();
    if entries.is_empty() {
        return Ok(());
    }
    let outcomes = match run_transaction(on, &entries, apply)? {
        Ok(outcomes) => outcomes,
        Err(why) if entries.len() == 1 => vec![Outcome::Failed(why)],
        Err(_) => isolated(on, &entries, apply)?,
    };
    let failing = outcomes.iter().all(|o| matches!(o, Outcome::Interrupted));
    settle(on, &entries, &outcomes, report)?;
    anyhow::ensure!(
        !failing,
        "the database rolled back the transaction of every entry of the batch"
    );
    Ok(())
}

/// Each entry in a transaction of its own (after the batch's transaction was rolled back). An
/// entry whose own transaction is rolled back failed, unless every one's was.
fn isolated(
    on: &Group<'_>,
    entries: &[Entry<'_>],
    apply: &mut impl Apply,
) -> anyhow::Result<Vec<Outcome>> {
    let mut outcomes = Vec::with_capacity(entries.len());
    let mut rolled_back = 0;
    for entry in entries {
        match run_transaction(on, std::slice::from_ref(entry), apply)? {
            Ok(mut one) => outcomes.push(one.pop().unwrap_or(Outcome::Interrupted)),
            Err(why) => {
                rolled_back += 1;
                outcomes.push(Outcome::Failed(why));
            }
        }
    }
    if rolled_back == entries.len() {
        outcomes = entries.iter().map(|_| Outcome::Interrupted).collect();
    }
    Ok(outcomes)
}

/// Applies `entries` in one batch transaction; their outcomes once it committed, or why the
/// database rolled it back.
fn run_transaction(
    on: &Group<'_>,
    entries: &[Entry<'_>],
    apply: &mut impl Apply,
) -> anyhow::Result<Result<Vec<Outcome>, String>> {
    apply.begin_batch()?;
    let mut outcomes = Vec::with_capacity(entries.len());
    for entry in entries {
        let env = match serde_json::from_str::<Envelope>(entry.raw) {
            Ok(env) => env,
            Err(e) => {
                outcomes.push(Outcome::Unreadable(format!("not an envelope: {e}")));
                continue;
            }
        };
        match apply.apply(&env) {
            Ok(()) => outcomes.push(Outcome::Applied),
            // Its savepoint undone like any failure's; the batch goes on.
            Err(e) if e.downcast_ref::<Unreadable>().is_some() && !apply.rolled_back() => {
                outcomes.push(Outcome::Unreadable(format!("{e:#}")))
            }
            Err(e) if e.downcast_ref::<NotDue>().is_some() && !apply.rolled_back() => {
                outcomes.push(Outcome::NotDue)
            }
            Err(e) if e.downcast_ref::<GiveUp>().is_some() && !apply.rolled_back() => {
                outcomes.push(Outcome::GaveUp(format!("{e:#}")))
            }
            Err(e) if apply.rolled_back() => {
                let why = format!("its transaction was rolled back: {e:#}");
                let (group, topic, id) = (on.group, on.topic, entry.id);
                eprintln!("receiver {group}: events:{topic} entry {id}: {why}");
                apply.abort_batch();
                return Ok(Err(why));
            }
            Err(e) => outcomes.push(Outcome::Failed(format!("{e:#}"))),
        }
    }
    if let Err(e) = apply.commit_batch() {
        let why = format!("its transaction did not commit: {e:#}");
        eprintln!(
            "receiver {}: a batch of events:{}: {why}",
            on.group, on.topic
        );
        apply.abort_batch();
        return Ok(Err(why));
    }
    Ok(Ok(outcomes))
}

/// Counts the outcomes, then acknowledges the applied entries and dead-letters the ones that
/// failed their last allowed delivery, in one step (settle.lua).
fn settle(
    on: &Group<'_>,
    entries: &[Entry<'_>],
    outcomes: &[Outcome],
    report: &mut DrainReport,
) -> anyhow::Result<()> {
    let (stream, dead) = (
        stream_key(on.topic),
        dead_letter::stream(on.topic, on.group),
    );
    let mut acks = Vec::new();
    let mut dead_letters = Vec::new();
    for (entry, outcome) in entries.iter().zip(outcomes) {
        report.read += 1;
        match outcome {
            Outcome::Applied => {
                report.applied += 1;
                acks.push(entry.id.to_owned());
            }
            Outcome::Failed(error) => {
                report.failed += 1;
                eprintln!(
                    "receiver {}: {stream} entry {} failed (delivery {}): {error}",
                    on.group, entry.id, entry.deliveries
                );
                if entry.deliveries >= on.opts.max_deliveries {
                    report.dead_lettered += 1;
                    let deliveries = entry.deliveries.to_string();
                    dead_letters.extend([entry.id.to_owned(), deliveries, error.clone()]);
                    dead_letters.push(entry.raw.to_owned());
                }
            }
            Outcome::Unreadable(error) | Outcome::GaveUp(error) => {
                report.failed += 1;
                report.dead_lettered += 1;
                let why = match outcome {
                    Outcome::GaveUp(_) => "its handler gave up",
                    _ => "it is unreadable",
                };
                eprintln!(
                    "receiver {}: {stream} entry {} dead-lettered, {why}: {error}",
                    on.group, entry.id
                );
                let deliveries = entry.deliveries.to_string();
                dead_letters.extend([entry.id.to_owned(), deliveries, error.clone()]);
                dead_letters.push(entry.raw.to_owned());
            }
            Outcome::Interrupted => report.failed += 1,
            Outcome::NotDue => report.deferred += 1,
        }
    }
    if acks.is_empty() && dead_letters.is_empty() {
        return Ok(());
    }
    let count = acks.len().to_string();
    let mut args: Vec<&str> = vec![on.group, on.topic, &count];
    args.extend(acks.iter().chain(&dead_letters).map(String::as_str));
    let keys = [stream.as_str(), dead.as_str(), dead_letter::INDEX];
    crate::redis::run(on.conn, &SETTLE, &keys, &args)?;
    Ok(())
}

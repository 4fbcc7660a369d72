//! Idempotency-Key claims (`idempotency_keys`): what a request with a key does next. A claim is
//! a customer's key ([`ClaimKey`]): two customers sending the same key never meet.
//!
//! The rules are `shop_domain::idempotency::decide`; this module reads and writes the row they
//! decide about, with states bound from [`ClaimState`], never spelled in SQL.
//!
//! A request in progress is not written here: it holds the key's lease in Redis
//! ([`crate::store::leases`]). The row is written once, with the request's outcome: `completed`
//! with the stored response in the transaction that writes the order, or `failed` with the next
//! attempt. That write is conditional on the row being the one the request started from
//! (absent, or the same attempt and not completed), so a request that lost its lease to the
//! sweep or to a retry that finished first writes nothing.

use anyhow::Context;
use shop_adapter::sqlite::changes;
use shop_domain::idempotency::{self, ClaimKey, ClaimState, Decision, StoredClaim};
use spin_sdk::sqlite::{Connection, Value};

use crate::db::{col_i64, col_opt_str, col_str, int, text};
use crate::ids;
use crate::store::leases::{self, Lease, Taken};
use crate::store::outbox::{Outgoing, Ring};

/// A claim not completed within this time is considered abandoned by a crashed instance. It is
/// far longer than any request (which is bounded by the host's timeouts), so a live holder is
/// never overtaken.
pub const LEASE_MS: i64 = 60_000;

/// A response stored with a completed claim.
#[derive(Clone)]
pub struct StoredResponse {
    pub status: u16,
    pub body: String,
}

/// A claim this request holds: its reservation is `key.reservation_id(attempt)`.
pub struct Claim {
    pub key: ClaimKey,
    pub token: String,
    pub fingerprint: String,
    pub attempt: i64,
    /// The attempt of the stored row this request started from (`None`: there was none); the
    /// outcome is written only over that row.
    base: Option<i64>,
}

impl Claim {
    /// No earlier try of this request exists (no stored row).
    pub fn fresh(&self) -> bool {
        self.base.is_none()
    }

    /// The lease this claim holds.
    pub fn lease(&self) -> Lease {
        Lease {
            key: self.key.clone(),
            token: self.token.clone(),
            fingerprint: self.fingerprint.clone(),
            attempt: self.attempt,
        }
    }
}

/// What the request does next.
pub enum Next {
    /// Go on under the claim.
    Proceed(Claim),
    /// The same request finished before: answer its stored response again.
    Replay(StoredResponse),
    /// The key was used for another request body.
    KeyReused,
    /// The same request is running right now.
    InProgress,
}

fn state(s: ClaimState) -> Value {
    text(s.as_str())
}

/// The row's primary key: owner, then key.
fn key_params(key: &ClaimKey) -> Vec<Value> {
    vec![text(key.owner_str()), text(key.key().as_str())]
}

fn read(
    conn: &Connection,
    key: &ClaimKey,
) -> anyhow::Result<Option<(StoredClaim, Option<StoredResponse>)>> {
    let rows = conn.execute(
        "SELECT fingerprint, state, attempt, claimed_ms, response_status, response_body
         FROM idempotency_keys WHERE user_id = ? AND idem_key = ?",
        &key_params(key),
    )?;
    Ok(rows.rows.first().map(|r| {
        let claim = StoredClaim {
            fingerprint: col_str(r, 0),
            state: ClaimState::parse(&col_str(r, 1)).unwrap_or(ClaimState::InProgress),
            attempt: col_i64(r, 2),
            claimed_at_ms: col_i64(r, 3),
        };
        let stored = match (r.get::<i64>(4), col_opt_str(r, 5)) {
            (Some(s), Some(body)) => Some(StoredResponse {
                status: u16::try_from(s).unwrap_or(500),
                body,
            }),
            _ => None,
        };
        (claim, stored)
    }))
}

/// Reads the claim of `key` and, unless the row answers the request (a replay, a reused key),
/// takes the key's lease for a request of `fingerprint`. No SQLite write: a replay and a new
/// request alike only read here. When the row changed between the read and the lease (a request
/// of the same key finished, or the sweep gave the claim up), the lease is dropped and the
/// request decides again on the row as it is now.
pub fn begin(conn: &Connection, key: &ClaimKey, fingerprint: &str) -> anyhow::Result<Next> {
    let key = &resolve(conn, key, fingerprint)?;
    for _ in 0..3 {
        let row = read(conn, key)?;
        let now = ids::now_ms();
        let claim = match decide(&row, key, fingerprint, now) {
            Ok(claim) => claim,
            Err(next) => return next,
        };
        match leases::take(&claim.lease(), LEASE_MS, now)? {
            Taken::Taken => {}
            Taken::Held { fingerprint: f } if f != fingerprint => return Ok(Next::KeyReused),
            Taken::Held { .. } => return Ok(Next::InProgress),
        }
        // Under the lease the row must still be the one decided on.
        let state = |r: &Option<(StoredClaim, Option<StoredResponse>)>| {
            r.as_ref().map(|(c, _)| (c.state, c.attempt))
        };
        if state(&read(conn, key)?) == state(&row) {
            return Ok(Next::Proceed(claim));
        }
        leases::drop(&claim.lease());
    }
    Ok(Next::InProgress)
}

/// The claim the customer's key names: their own, or, when they have none, a claim stored before
/// keys were scoped (owner `''`, migration 0009) for this very request. The fingerprint covers
/// the customer, so another customer's request never matches such a claim (and learns nothing
/// of it), while a retry across the upgrade keeps the claim and its reservation.
fn resolve(conn: &Connection, key: &ClaimKey, fingerprint: &str) -> anyhow::Result<ClaimKey> {
    if read(conn, key)?.is_some() {
        return Ok(key.clone());
    }
    let unscoped = ClaimKey::unscoped(key.key().clone());
    Ok(match read(conn, &unscoped)? {
        Some((claim, _)) if claim.fingerprint == fingerprint => unscoped,
        _ => key.clone(),
    })
}

/// What the rules say for `row`: a claim to go on under (`Ok`), or the answer (`Err`).
fn decide(
    row: &Option<(StoredClaim, Option<StoredResponse>)>,
    key: &ClaimKey,
    fingerprint: &str,
    now: i64,
) -> Result<Claim, anyhow::Result<Next>> {
    let decision = idempotency::decide(row.as_ref().map(|(c, _)| c), fingerprint, now, LEASE_MS);
    let attempt = match decision {
        Decision::KeyReused => return Err(Ok(Next::KeyReused)),
        Decision::InProgress => return Err(Ok(Next::InProgress)),
        Decision::Replay => return Err(replay(row.clone())),
        Decision::ClaimNew => 0,
        Decision::Retake { attempt } | Decision::Retry { attempt } => attempt,
    };
    Ok(Claim {
        key: key.clone(),
        token: ids::random_id("clm_"),
        fingerprint: fingerprint.to_owned(),
        attempt,
        base: row.as_ref().map(|(c, _)| c.attempt),
    })
}

fn replay(row: Option<(StoredClaim, Option<StoredResponse>)>) -> anyhow::Result<Next> {
    let stored = row
        .and_then(|(_, s)| s)
        .context("completed claim without response")?;
    Ok(Next::Replay(stored))
}

/// The one write of a claim: its outcome, over the row the request started from only (see the
/// module comment); whether it was written.
fn settle(
    conn: &Connection,
    claim: &Claim,
    to: ClaimState,
    attempt: i64,
    response: Option<(&str, &str)>,
    now: i64,
) -> anyhow::Result<bool> {
    let (status, body, order_id) = match response {
        Some((body, order_id)) => (int(201), text(body), text(order_id)),
        None => (Value::Null, Value::Null, Value::Null),
    };
    // RETURNING answers a row only when the row was inserted or updated (not when the WHERE
    // kept it), in the same call: no `SELECT changes()` while the transaction holds the lock.
    let written = conn.execute(
        "INSERT INTO idempotency_keys (user_id, idem_key, fingerprint, state, attempt, claim_token, claimed_ms, updated_ms, response_status, response_body, order_id)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (user_id, idem_key) DO UPDATE SET state = excluded.state, attempt = excluded.attempt,
           claim_token = excluded.claim_token, claimed_ms = excluded.claimed_ms, updated_ms = excluded.updated_ms,
           response_status = excluded.response_status, response_body = excluded.response_body, order_id = excluded.order_id
         WHERE idempotency_keys.state <> ? AND idempotency_keys.attempt = ? AND idempotency_keys.fingerprint = excluded.fingerprint
         RETURNING 1",
        &[
            text(claim.key.owner_str()), text(claim.key.key().as_str()), text(&claim.fingerprint), state(to), int(attempt), text(&claim.token),
            int(now), int(now), status, body, order_id,
            state(ClaimState::Completed), int(claim.base.unwrap_or(-1)),
        ],
    )?;
    Ok(written.rows.len() == 1)
}

/// Completes the claim with its 201 response for `order_id`, inside the caller's transaction;
/// `false` if the claim is no longer this request's (nothing written).
pub fn complete(
    conn: &Connection,
    claim: &Claim,
    body: &str,
    order_id: &str,
    now: i64,
) -> anyhow::Result<bool> {
    let attempt = claim.attempt;
    settle(
        conn,
        claim,
        ClaimState::Completed,
        attempt,
        Some((body, order_id)),
        now,
    )
}

/// Gives the claim up: the same request may try again with `next_attempt`; `false` if the claim
/// is no longer this request's.
pub fn fail(conn: &Connection, claim: &Claim, next_attempt: i64, now: i64) -> anyhow::Result<bool> {
    settle(conn, claim, ClaimState::Failed, next_attempt, None, now)
}

/// Moves the claim to the next attempt (a new reservation id); `false` if it is no longer ours.
pub fn next_attempt(claim: &mut Claim) -> anyhow::Result<bool> {
    let mut lease = claim.lease();
    let moved = leases::move_to(&mut lease, claim.attempt + 1)?;
    claim.attempt = lease.attempt;
    Ok(moved)
}

/// The request is done with its key: its outcome is written, or it stores nothing.
pub fn release(claim: &Claim) {
    leases::drop(&claim.lease());
}

/// [`release`], after sending the messages the request committed with its outcome, in the same
/// round trip.
pub fn release_publishing(claim: &Claim, committed: &[Outgoing], ring: Ring) {
    leases::drop_publishing(&claim.lease(), committed, ring);
}

/// The request lost its claim: it frees the key's lease (if still its own) but leaves its
/// open-lease member when it moved to an attempt of its own during the request, since nothing
/// else owes that attempt's reservation back: the sweep settles it (and owes nothing when an
/// order was written with it).
pub fn let_go(claim: &Claim) {
    if claim.attempt == claim.base.unwrap_or(0) {
        leases::drop(&claim.lease());
    } else {
        leases::free(&claim.lease());
    }
}

/// Whether the key's lease is still this request's (it did not run out and get taken over).
pub fn still_held(claim: &Claim) -> bool {
    leases::held(&claim.lease()).unwrap_or(false)
}

/// Runs `sql` (whose last parameters are owner, key, token and state) against the claim only while it is
/// still ours and in progress; whether it was.
fn if_ours(
    conn: &Connection,
    sql: &str,
    mut params: Vec<Value>,
    key: &ClaimKey,
    token: &str,
) -> anyhow::Result<bool> {
    params.extend(key_params(key));
    params.extend([text(token), state(ClaimState::InProgress)]);
    conn.execute(sql, &params)?;
    Ok(changes(conn)? == 1)
}

/// Settles the claim of a stale open lease (its holder died, or stalled far past its lease),
/// inside the sweep's transaction: unless an order was written with the lease's reservation or a
/// later attempt already moved past it, the claim becomes `failed` with the next attempt, so a
/// holder that wakes up can no longer write. Returns whether the lease's reservation is owed
/// back.
pub fn abandon(conn: &Connection, lease: &Lease, now: i64) -> anyhow::Result<bool> {
    let row = read(conn, &lease.key)?.map(|(c, _)| c);
    match &row {
        Some(c) if c.state == ClaimState::Completed => return Ok(c.attempt != lease.attempt),
        Some(c) if c.attempt > lease.attempt => return Ok(false),
        _ => {}
    }
    let claim = Claim {
        key: lease.key.clone(),
        token: lease.token.clone(),
        fingerprint: lease.fingerprint.clone(),
        attempt: lease.attempt,
        base: row.map(|c| c.attempt),
    };
    fail(conn, &claim, lease.attempt + 1, now)
}

/// Gives up an abandoned `in-progress` row (written by versions before the Redis lease): the
/// same request may try again with `next_attempt`; `false` if it was retaken meanwhile.
pub fn give_up(
    conn: &Connection,
    key: &ClaimKey,
    token: &str,
    next_attempt: i64,
    now: i64,
) -> anyhow::Result<bool> {
    let sql = "UPDATE idempotency_keys SET state = ?, attempt = ?, updated_ms = ?
               WHERE user_id = ? AND idem_key = ? AND claim_token = ? AND state = ?";
    let params = vec![state(ClaimState::Failed), int(next_attempt), int(now)];
    if_ours(conn, sql, params, key, token)
}

/// An in-progress claim whose holder is presumed dead.
pub struct Abandoned {
    pub key: ClaimKey,
    pub token: String,
    pub attempt: i64,
}

/// Up to `limit` claims in progress since `claimed_before`, oldest first.
pub fn abandoned(
    conn: &Connection,
    claimed_before: i64,
    limit: i64,
) -> anyhow::Result<Vec<Abandoned>> {
    let rows = conn.execute(
        "SELECT user_id, idem_key, attempt, claim_token FROM idempotency_keys
         WHERE state = ? AND claimed_ms <= ? ORDER BY claimed_ms LIMIT ?",
        &[
            state(ClaimState::InProgress),
            int(claimed_before),
            int(limit),
        ],
    )?;
    Ok(rows
        .rows
        .iter()
        .filter_map(|r| {
            Some(Abandoned {
                key: ClaimKey::from_stored(&col_str(r, 0), &col_str(r, 1))?,
                attempt: col_i64(r, 2),
                token: col_str(r, 3),
            })
        })
        .collect())
}

/// Deletes finished claims last updated before `before_ms`; how many.
pub fn purge_finished(conn: &Connection, before_ms: i64) -> anyhow::Result<i64> {
    conn.execute(
        "DELETE FROM idempotency_keys WHERE state IN (?, ?) AND updated_ms < ?",
        &[
            state(ClaimState::Completed),
            state(ClaimState::Failed),
            int(before_ms),
        ],
    )?;
    changes(conn)
}

//! Idempotency-Key claims (`idempotency_keys`): what a request with a key does next.
//!
//! The rules are `shop_domain::idempotency::decide`; this module reads and writes the row they
//! decide about, with states bound from [`ClaimState`], never spelled in SQL.

use anyhow::Context;
use shop_adapter::sqlite::{changes, Tx};
use shop_domain::idempotency::{self, ClaimState, Decision, IdempotencyKey, StoredClaim};
use spin_sdk::sqlite::{Connection, Value};

use crate::db::{col_i64, col_opt_str, col_str, int, text};
use crate::ids;

/// A claim not completed within this time is considered abandoned by a crashed instance. It is
/// far longer than any request (which is bounded by the host's timeouts), so a live holder is
/// never overtaken.
pub const LEASE_MS: i64 = 60_000;

/// A response stored with a completed claim.
pub struct StoredResponse {
    pub status: u16,
    pub body: String,
}

/// A claim this request holds: its reservation is `key.reservation_id(attempt)`.
pub struct Claim {
    pub key: IdempotencyKey,
    pub token: String,
    pub attempt: i64,
    /// This request created the claim (no earlier try of it exists).
    pub fresh: bool,
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

fn read(
    conn: &Connection,
    key: &IdempotencyKey,
) -> anyhow::Result<Option<(StoredClaim, Option<StoredResponse>)>> {
    let rows = conn.execute(
        "SELECT fingerprint, state, attempt, claimed_ms, response_status, response_body
         FROM idempotency_keys WHERE idem_key = ?",
        &[text(key.as_str())],
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

/// Reads, and if need be claims, `key` for a request of `fingerprint`. A finished request is
/// answered from a plain read first: a replay takes no write lock.
pub fn begin(conn: &Connection, key: &IdempotencyKey, fingerprint: &str) -> anyhow::Result<Next> {
    match read(conn, key)? {
        Some((claim, _)) if claim.fingerprint != fingerprint => return Ok(Next::KeyReused),
        Some((claim, Some(stored))) if claim.state == ClaimState::Completed => {
            return Ok(Next::Replay(stored))
        }
        _ => {}
    }
    let tx = Tx::begin(conn)?;
    let next = claim(conn, key, fingerprint)?;
    tx.commit()?;
    Ok(next)
}

/// The decision and its write, inside the caller's `BEGIN IMMEDIATE`.
fn claim(conn: &Connection, key: &IdempotencyKey, fingerprint: &str) -> anyhow::Result<Next> {
    let stored = read(conn, key)?;
    let now = ids::now_ms();
    let decision = idempotency::decide(stored.as_ref().map(|(c, _)| c), fingerprint, now, LEASE_MS);
    let token = ids::random_id("clm_");
    let attempt = match decision {
        Decision::KeyReused => return Ok(Next::KeyReused),
        Decision::InProgress => return Ok(Next::InProgress),
        Decision::Replay => {
            let stored = stored
                .and_then(|(_, s)| s)
                .context("completed claim without response")?;
            return Ok(Next::Replay(stored));
        }
        Decision::ClaimNew => {
            conn.execute(
                "INSERT INTO idempotency_keys (idem_key, fingerprint, state, attempt, claim_token, claimed_ms, updated_ms)
                 VALUES (?, ?, ?, 0, ?, ?, ?)",
                &[text(key.as_str()), text(fingerprint), state(ClaimState::InProgress), text(&token), int(now), int(now)],
            )?;
            0
        }
        Decision::Retake { attempt } | Decision::Retry { attempt } => {
            conn.execute(
                "UPDATE idempotency_keys SET state = ?, attempt = ?, claim_token = ?, claimed_ms = ?, updated_ms = ?
                 WHERE idem_key = ?",
                &[state(ClaimState::InProgress), int(attempt), text(&token), int(now), int(now), text(key.as_str())],
            )?;
            attempt
        }
    };
    Ok(Next::Proceed(Claim {
        key: key.clone(),
        token,
        attempt,
        fresh: decision == Decision::ClaimNew,
    }))
}

/// Runs `sql` (whose last two parameters are key and token) against the claim only while it is
/// still ours and in progress; whether it was.
fn if_ours(
    conn: &Connection,
    sql: &str,
    mut params: Vec<Value>,
    key: &IdempotencyKey,
    token: &str,
) -> anyhow::Result<bool> {
    params.extend([
        text(key.as_str()),
        text(token),
        state(ClaimState::InProgress),
    ]);
    conn.execute(sql, &params)?;
    Ok(changes(conn)? == 1)
}

/// Deletes a claim this request created: the request was refused as a client mistake, which
/// stores nothing.
pub fn forget(conn: &Connection, claim: &Claim) -> anyhow::Result<bool> {
    let sql = "DELETE FROM idempotency_keys WHERE idem_key = ? AND claim_token = ? AND state = ?";
    if_ours(conn, sql, Vec::new(), &claim.key, &claim.token)
}

/// Gives the claim up: the same request may try again with `next_attempt`.
pub fn fail(
    conn: &Connection,
    key: &IdempotencyKey,
    token: &str,
    next_attempt: i64,
    now: i64,
) -> anyhow::Result<bool> {
    let sql = "UPDATE idempotency_keys SET state = ?, attempt = ?, updated_ms = ?
               WHERE idem_key = ? AND claim_token = ? AND state = ?";
    let params = vec![state(ClaimState::Failed), int(next_attempt), int(now)];
    if_ours(conn, sql, params, key, token)
}

/// Moves the claim to the next attempt (a new reservation id); `false` if it is no longer ours.
pub fn next_attempt(conn: &Connection, claim: &mut Claim) -> anyhow::Result<bool> {
    claim.attempt += 1;
    let sql = "UPDATE idempotency_keys SET attempt = ?, updated_ms = ?
               WHERE idem_key = ? AND claim_token = ? AND state = ?";
    let params = vec![int(claim.attempt), int(ids::now_ms())];
    if_ours(conn, sql, params, &claim.key, &claim.token)
}

/// Completes the claim with its 201 response for `order_id`; `false` if it is no longer ours.
pub fn complete(
    conn: &Connection,
    claim: &Claim,
    body: &str,
    order_id: &str,
    now: i64,
) -> anyhow::Result<bool> {
    let sql = "UPDATE idempotency_keys SET state = ?, response_status = 201, response_body = ?, order_id = ?, updated_ms = ?
               WHERE idem_key = ? AND claim_token = ? AND state = ?";
    let params = vec![
        state(ClaimState::Completed),
        text(body),
        text(order_id),
        int(now),
    ];
    if_ours(conn, sql, params, &claim.key, &claim.token)
}

/// An in-progress claim whose holder is presumed dead.
pub struct Abandoned {
    pub key: IdempotencyKey,
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
        "SELECT idem_key, attempt, claim_token FROM idempotency_keys
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
                key: IdempotencyKey::parse(&col_str(r, 0)).ok()?,
                attempt: col_i64(r, 1),
                token: col_str(r, 2),
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

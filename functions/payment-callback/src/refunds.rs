//! The refunds receiver (the `refunds` component: this wasm on Spin's Redis trigger, woken by
//! `doorbell:orders`; no service chaining): drains the `events:orders` stream as consumer group
//! `refunds` and asks the provider to refund each `RefundRequired`, with Stripe's API shape
//! (`POST {payment_api_base}/v1/refunds`, form-encoded `payment_intent` and `amount`,
//! `Authorization: Bearer {payment_secret_key}`).
//!
//! Exactly one refund per message: the request carries `Idempotency-Key: refund-<message id>`,
//! so a retry after a failure, a timeout (the provider may have made the refund) or a redelivery
//! gets the refund already made, never a second one; once the provider answered with success,
//! the refund's row and the message's inbox row are written in one transaction, and a later
//! delivery of the message sends nothing.
//!
//! Failures back off: every call is an attempt claimed in `refund_attempts` before it is made
//! (so a call that never reports back counts too, and two receivers never make the same
//! attempt). A call that fails (non-2xx, no answer within `refund_timeout_ms`) leaves the
//! message pending; the next call is due `refund_backoff_ms` after the first failed one's end,
//! the wait doubling per attempt (at most an hour). A delivery before that is left pending
//! untouched ([`receiver::NotDue`]); after the [`MAX_ATTEMPTS`]th failed call the message is
//! dead-lettered at once ([`receiver::GiveUp`]: listed by `GET /api/ops/dead-letters`,
//! replayable; a replayed message is a new message with attempts of its own). Every other kind
//! on the topic is acknowledged.
//! Also run by `POST /api/payments/refunds/drain` (internal token) where there is no Redis
//! trigger.

use shop_adapter::receiver::{self, DrainOptions, DrainReport, Envelope, GiveUp, NotDue};
use shop_adapter::sqlite::{changes, Tx};
use shop_domain::messages::{OrderEvent, RefundRequired, Topic};
use spin_sdk::http::{Method, Request, Response};
use spin_sdk::sqlite::{Connection, Value};

use crate::db;

/// This receiver's consumer group on the `orders` topic.
pub const GROUP: &str = "refunds";

/// How long a provider call may take by default (well inside a receiver's run).
const DEFAULT_TIMEOUT_MS: u64 = 3_000;

/// Provider calls per message at most; after the last one fails the message is a dead letter.
pub const MAX_ATTEMPTS: i64 = 5;

/// The wait after a first failed call by default (`refund_backoff_ms`); it doubles per attempt.
const DEFAULT_BACKOFF_MS: u64 = 30_000;

/// The longest wait between two calls.
const MAX_BACKOFF_MS: u64 = 3_600_000;

/// Spin's Redis trigger: a ring of `doorbell:orders`.
#[spin_sdk::redis_component]
fn on_doorbell(_payload: Vec<u8>) -> anyhow::Result<()> {
    let r = receive()?;
    eprintln!(
        "refunds: read {} applied {} failed {} dead-lettered {}",
        r.read, r.applied, r.failed, r.dead_lettered
    );
    Ok(())
}

/// Drains the order messages and refunds each `RefundRequired` not refunded yet.
pub fn receive() -> anyhow::Result<DrainReport> {
    let url = shop_adapter::vars::get("redis_url")?;
    let conn = db::open().map_err(|p| anyhow::anyhow!("{}", p.detail))?;
    let provider = Provider::from_vars()?;
    let apply = |env: &Envelope| match env.decode::<OrderEvent>()? {
        OrderEvent::RefundRequired(refund) => apply(&conn, &provider, env, &refund),
        _ => Ok(()),
    };
    // A pending message is looked at again once per backoff (30 s at most), due or not. Its
    // attempts bound the calls, not the delivery count, which grows with every look.
    let options = DrainOptions {
        min_idle_ms: provider.backoff_ms.min(DrainOptions::default().min_idle_ms),
        max_deliveries: u32::MAX,
        ..DrainOptions::default()
    };
    receiver::drain(&url, OrderEvent::TOPIC, GROUP, &options, apply)
}

/// One `RefundRequired`: nothing if its refund was made; otherwise the provider's refund
/// (idempotent by the message's key), then its row and inbox row in one transaction.
fn apply(
    conn: &Connection,
    provider: &Provider,
    env: &Envelope,
    refund: &RefundRequired,
) -> anyhow::Result<()> {
    if refunded(conn, &env.message_id)? {
        return Ok(());
    }
    let attempt = claim(conn, provider, &env.message_id)?;
    let key = format!("refund-{}", env.message_id);
    let refund_id = match spin_sdk::http::run(provider.refund(refund, &key)) {
        Ok(id) => id,
        Err(e) => return Err(failed(conn, &env.message_id, attempt, e)),
    };
    eprintln!(
        "refunds: refund {refund_id} of payment {} for order {} ({})",
        refund.payment_intent_id,
        refund.order_id,
        refund.reason.as_str()
    );
    let tx = Tx::begin(conn)?;
    let now = shop_adapter::ids::now_ms();
    if shop_adapter::inbox::record(conn, &env.message_id, &env.kind, now)? {
        insert(conn, env, refund, &key, &refund_id, now)?;
    }
    tx.commit()
}

fn refunded(conn: &Connection, message_id: &str) -> anyhow::Result<bool> {
    let rows = conn.execute(
        "SELECT 1 FROM refunds WHERE message_id = ?",
        &[Value::Text(message_id.to_owned())],
    )?;
    Ok(!rows.rows.is_empty())
}

/// Claims the next provider call for `message_id`, committed before the call is made; its
/// number. [`NotDue`] while the wait after the last failed call runs (or another receiver has
/// just claimed it), [`GiveUp`] once [`MAX_ATTEMPTS`] calls were made.
fn claim(conn: &Connection, provider: &Provider, message_id: &str) -> anyhow::Result<i64> {
    let id = Value::Text(message_id.to_owned());
    let rows = conn.execute(
        "SELECT attempts, next_attempt_ms, last_error FROM refund_attempts WHERE message_id = ?",
        std::slice::from_ref(&id),
    )?;
    let row = rows.rows().next();
    let made = row
        .as_ref()
        .and_then(|r| r.get::<i64>("attempts"))
        .unwrap_or(0);
    let due = row
        .as_ref()
        .and_then(|r| r.get::<i64>("next_attempt_ms"))
        .unwrap_or(0);
    if made >= MAX_ATTEMPTS {
        let last = row.as_ref().and_then(|r| r.get::<&str>("last_error"));
        let last = last.unwrap_or("no answer");
        return Err(GiveUp(format!("{made} refund calls failed, the last: {last}")).into());
    }
    let now = shop_adapter::ids::now_ms();
    if now < due {
        return Err(NotDue.into());
    }
    let attempt = made + 1;
    // Counted from the call's latest end, so the wait never starts while the call runs.
    let next = now + (provider.timeout_ms + provider.backoff_after(attempt)) as i64;
    conn.execute(
        "INSERT INTO refund_attempts (message_id, attempts, attempted_ms, next_attempt_ms)
         VALUES (?, ?, ?, ?)
         ON CONFLICT (message_id) DO UPDATE SET attempts = excluded.attempts,
             attempted_ms = excluded.attempted_ms, next_attempt_ms = excluded.next_attempt_ms
         WHERE refund_attempts.attempts = ?",
        &[
            id,
            Value::Integer(attempt),
            Value::Integer(now),
            Value::Integer(next),
            Value::Integer(made),
        ],
    )?;
    // Another receiver claimed this attempt between the read and the write.
    if changes(conn)? != 1 {
        return Err(NotDue.into());
    }
    Ok(attempt)
}

/// A failed call: recorded as the message's last error; the error to fail the message with
/// ([`GiveUp`] after the last attempt, so it is dead-lettered now instead of after one more wait).
fn failed(conn: &Connection, message_id: &str, attempt: i64, e: anyhow::Error) -> anyhow::Error {
    let error = format!("{e:#}");
    let recorded = conn.execute(
        "UPDATE refund_attempts SET last_error = ? WHERE message_id = ?",
        &[
            Value::Text(error.clone()),
            Value::Text(message_id.to_owned()),
        ],
    );
    if let Err(r) = recorded {
        eprintln!("refunds: the error of {message_id}'s attempt {attempt} not recorded: {r}");
    }
    match attempt >= MAX_ATTEMPTS {
        true => GiveUp(format!("{attempt} refund calls failed, the last: {error}")).into(),
        false => e.context(format!("refund attempt {attempt} of {MAX_ATTEMPTS}")),
    }
}

fn insert(
    conn: &Connection,
    env: &Envelope,
    refund: &RefundRequired,
    key: &str,
    refund_id: &str,
    now: i64,
) -> anyhow::Result<()> {
    let text = |s: &str| Value::Text(s.to_owned());
    conn.execute(
        "INSERT INTO refunds (message_id, order_id, payment_intent_id, amount, currency, reason,
                              idempotency_key, refund_id, created_ms)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        &[
            text(&env.message_id),
            text(&refund.order_id),
            text(refund.payment_intent_id.as_str()),
            Value::Integer(refund.amount.minor()),
            text(refund.amount.currency().as_str()),
            text(refund.reason.as_str()),
            text(key),
            text(refund_id),
            Value::Integer(now),
        ],
    )?;
    Ok(())
}

/// The payment provider's refunds API.
struct Provider {
    base: String,
    secret_key: String,
    timeout_ms: u64,
    /// The wait after a first failed call.
    backoff_ms: u64,
}

impl Provider {
    /// `payment_api_base` (default `https://api.stripe.com`), `payment_secret_key` (required),
    /// `refund_timeout_ms` (default 3000), `refund_backoff_ms` (default 30000).
    fn from_vars() -> anyhow::Result<Provider> {
        let base = shop_adapter::vars::get("payment_api_base").unwrap_or_default();
        let base = match base.trim_end_matches('/') {
            "" => "https://api.stripe.com".to_owned(),
            b => b.to_owned(),
        };
        let secret_key = shop_adapter::vars::get("payment_secret_key")?;
        anyhow::ensure!(!secret_key.is_empty(), "payment_secret_key is empty");
        let timeout = shop_adapter::vars::get("refund_timeout_ms").unwrap_or_default();
        let timeout_ms = timeout.parse().unwrap_or(DEFAULT_TIMEOUT_MS);
        let backoff = shop_adapter::vars::get("refund_backoff_ms").unwrap_or_default();
        let backoff_ms = backoff.parse().unwrap_or(DEFAULT_BACKOFF_MS).max(1);
        Ok(Provider {
            base,
            secret_key,
            timeout_ms,
            backoff_ms,
        })
    }

    /// The wait after failed call number `attempt` (1, 2, ...): the backoff doubled per call
    /// before it, at most [`MAX_BACKOFF_MS`].
    fn backoff_after(&self, attempt: i64) -> u64 {
        let doublings = attempt.clamp(1, 32) as u32 - 1;
        self.backoff_ms
            .saturating_mul(1 << doublings)
            .min(MAX_BACKOFF_MS)
    }

    /// `POST /v1/refunds` for `refund` under `key`; the provider's refund id.
    async fn refund(&self, refund: &RefundRequired, key: &str) -> anyhow::Result<String> {
        let body = format!(
            "payment_intent={}&amount={}",
            form_value(refund.payment_intent_id.as_str()),
            refund.amount.minor()
        );
        let req = Request::builder()
            .method(Method::Post)
            .uri(format!("{}/v1/refunds", self.base))
            .header("authorization", format!("Bearer {}", self.secret_key))
            .header("idempotency-key", key)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .build();
        let sent = shop_adapter::breaker::within(self.timeout_ms, spin_sdk::http::send(req));
        let resp: Response = sent
            .await
            .ok_or_else(|| anyhow::anyhow!("no answer within {} ms", self.timeout_ms))??;
        let status = *resp.status();
        let text = String::from_utf8_lossy(resp.body());
        anyhow::ensure!(
            (200..300).contains(&status),
            "the provider answered {status}: {text}"
        );
        let answer: serde_json::Value = serde_json::from_slice(resp.body())?;
        answer["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("the provider's refund has no id: {text}"))
    }
}

/// A form value: provider ids are visible ASCII; everything but unreserved characters is
/// percent-encoded.
fn form_value(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

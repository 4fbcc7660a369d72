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
//! delivery of the message sends nothing. A call that fails (non-2xx, no answer within
//! `refund_timeout_ms`) fails the message: the receiver leaves it pending, takes it again after
//! its minimum idle time (the backoff), and dead-letters it after its last delivery (listed by
//! `GET /api/ops/dead-letters`, replayable). Every other kind on the topic is acknowledged.
//! Also run by `POST /api/payments/refunds/drain` (internal token) where there is no Redis
//! trigger.

use shop_adapter::receiver::{self, DrainOptions, DrainReport, Envelope};
use shop_adapter::sqlite::Tx;
use shop_domain::messages::{OrderEvent, RefundRequired, Topic};
use spin_sdk::http::{Method, Request, Response};
use spin_sdk::sqlite::{Connection, Value};

use crate::db;

/// This receiver's consumer group on the `orders` topic.
pub const GROUP: &str = "refunds";

/// How long a provider call may take by default (well inside a receiver's run).
const DEFAULT_TIMEOUT_MS: u64 = 3_000;

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
    receiver::drain(
        &url,
        OrderEvent::TOPIC,
        GROUP,
        &DrainOptions::default(),
        apply,
    )
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
    let key = format!("refund-{}", env.message_id);
    let refund_id = spin_sdk::http::run(provider.refund(refund, &key))?;
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
}

impl Provider {
    /// `payment_api_base` (default `https://api.stripe.com`), `payment_secret_key` (required),
    /// `refund_timeout_ms` (default 3000).
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
        Ok(Provider {
            base,
            secret_key,
            timeout_ms,
        })
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

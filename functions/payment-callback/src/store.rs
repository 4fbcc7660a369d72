//! Recording a verified provider event: inbox row, payment record and outbox message in ONE
//! transaction, so a delivery either has all its effects or none, and a redelivery has none.

use shop_adapter::outbox::{self, Message};
use shop_adapter::sqlite::Tx;
use shop_adapter::{inbox, sqlite::text_or_null};
use shop_domain::payment::{PaymentEventKind, PaymentStatus, ProviderEvent, Transition};
use spin_sdk::sqlite::{Connection, Value};

/// What recording an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// The event id was in the inbox already: nothing written.
    Duplicate,
    /// Seen for the first time but nothing to do (a type the shop ignores, or an event that
    /// would move the payment backwards): only the inbox row is written.
    Ignored,
    /// The payment record changed and this outbox message announces it.
    Announced { message_id: String },
}

/// The payment record as far as the rules need it.
struct Current {
    status: PaymentStatus,
    amount_refunded: i64,
}

pub fn record(
    conn: &Connection,
    event: &ProviderEvent,
    trace_id: Option<&str>,
    now_ms: i64,
) -> anyhow::Result<Recorded> {
    let tx = Tx::begin(conn)?;
    if !inbox::record(conn, event.id.as_str(), event.kind.provider_type(), now_ms)? {
        // Committed, not rolled back, though nothing was written: the first delivery's row may
        // be a write of this commit group that is not durable yet, and the provider must not
        // hear 200 for an event that could still be lost (the commit waits for the group).
        tx.commit()?;
        return Ok(Recorded::Duplicate);
    }
    let (Some((intent_id, order_id, incoming)), Some(message)) =
        (event.kind.subject(), event.message())
    else {
        tx.commit()?;
        return Ok(Recorded::Ignored);
    };
    let current = load(conn, intent_id.as_str())?;
    let refund_grew = match (&event.kind, &current) {
        (
            PaymentEventKind::Refunded {
                amount_refunded, ..
            },
            Some(cur),
        ) => amount_refunded.minor() > cur.amount_refunded,
        _ => false,
    };
    let Transition::Apply(status) =
        PaymentStatus::after(current.map(|c| c.status), incoming, refund_grew)
    else {
        tx.commit()?;
        return Ok(Recorded::Ignored);
    };
    upsert(conn, event, status, now_ms)?;
    let message = Message::new(&message, order_id.as_str(), trace_id, now_ms)?;
    let message_id = outbox::append(conn, &message)?;
    tx.commit()?;
    Ok(Recorded::Announced { message_id })
}

fn load(conn: &Connection, intent_id: &str) -> anyhow::Result<Option<Current>> {
    let rows = conn.execute(
        "SELECT status, amount_refunded FROM payments WHERE payment_intent_id = ?",
        &[Value::Text(intent_id.to_owned())],
    )?;
    let Some(row) = rows.rows.first() else {
        return Ok(None);
    };
    let status = row.get::<&str>(0).unwrap_or_default();
    let status = PaymentStatus::parse(status)
        .ok_or_else(|| anyhow::anyhow!("payment {intent_id} has an unknown status {status:?}"))?;
    Ok(Some(Current {
        status,
        amount_refunded: row.get::<i64>(1).unwrap_or_default(),
    }))
}

/// Inserts or updates the payment record of the event's intent.
const UPSERT: &str = "INSERT INTO payments (payment_intent_id, order_id, amount, currency, status,
        amount_refunded, charge_id, failure_reason, last_event_id, last_event_created,
        created_ms, updated_ms)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (payment_intent_id) DO UPDATE SET
        amount = CASE WHEN excluded.status = 'REFUNDED' THEN payments.amount ELSE excluded.amount END,
        currency = CASE WHEN excluded.status = 'REFUNDED' THEN payments.currency ELSE excluded.currency END,
        status = excluded.status,
        amount_refunded = MAX(payments.amount_refunded, excluded.amount_refunded),
        charge_id = COALESCE(excluded.charge_id, payments.charge_id),
        failure_reason = excluded.failure_reason,
        last_event_id = excluded.last_event_id,
        last_event_created = excluded.last_event_created,
        updated_ms = excluded.updated_ms";

/// A refund reports the charge, not the intent: its amount and currency only fill a row that the
/// refund creates (the intent's events not arrived yet) and never overwrite the intent's (the
/// CASEs above). A failure reason describes the current failure only, so any other status
/// clears it.
fn upsert(
    conn: &Connection,
    event: &ProviderEvent,
    status: PaymentStatus,
    now_ms: i64,
) -> anyhow::Result<()> {
    let (amount, amount_refunded, charge_id, reason) = match &event.kind {
        PaymentEventKind::Succeeded { amount, .. } => (amount, 0, None, None),
        PaymentEventKind::Failed { amount, reason, .. } => (amount, 0, None, reason.as_deref()),
        PaymentEventKind::Refunded {
            amount,
            amount_refunded,
            charge_id,
            ..
        } => (
            amount,
            amount_refunded.minor(),
            Some(charge_id.as_str()),
            None,
        ),
        PaymentEventKind::Other(_) => return Ok(()),
    };
    let Some((intent_id, order_id, _)) = event.kind.subject() else {
        return Ok(());
    };
    let text = |s: &str| Value::Text(s.to_owned());
    conn.execute(
        UPSERT,
        &[
            text(intent_id.as_str()),
            text(order_id.as_str()),
            Value::Integer(amount.minor()),
            text(amount.currency().as_str()),
            text(status.as_str()),
            Value::Integer(amount_refunded),
            text_or_null(charge_id),
            text_or_null(reason),
            text(event.id.as_str()),
            Value::Integer(event.created),
            Value::Integer(now_ms),
            Value::Integer(now_ms),
        ],
    )?;
    Ok(())
}

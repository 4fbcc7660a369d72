//! `POST /api/payments/webhook`: a payment provider's (Stripe-compatible) event delivery.
//!
//! The recipe: the body was read up to its bound (413 beyond it); verify the `Stripe-Signature` on the raw bytes; only then parse
//! the event; record it (inbox, payment record, outbox message) in one transaction; after the
//! commit, hand the message to Redis at once (best effort: the compensator's relay delivers
//! whatever this misses); answer 200 so the provider stops retrying.
//!
//! Nothing is stored before the signature and the event have been accepted: a forged, stale or
//! malformed delivery leaves no trace but a 4xx.

// `Problem` is the one error a request ends with, built at most once per request: boxing it
// would only add noise at every call site.
#![allow(clippy::result_large_err)]

use serde::Serialize;
use shop_adapter::respond::{json, HandlerResult};
use shop_adapter::{ids, Problem};
use shop_domain::field::FieldError;
use shop_domain::payment::{ProviderEvent, SignatureError, SIGNATURE_HEADER};
use spin_sdk::http::Request;

use crate::store::{self, Recorded};
use crate::{config, db};

/// Provider events are a few KiB; anything far larger is not one: the body is read up to this
/// and refused with 413 beyond it (lib.rs).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The 200 body: `received` always, `duplicate` for a redelivered event id, `ignored` for an
/// event that changed nothing (a type the shop does not act on, or an out-of-order delivery).
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Ack {
    pub received: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ignored: bool,
}

pub fn handle(req: &Request) -> HandlerResult {
    let body = req.body();
    let secrets = config::secrets()?;
    let now_ms = ids::now_ms();
    let verified = secrets
        .verify(signature_header(req)?, body, now_ms.div_euclid(1000))
        .map_err(bad_signature)?;
    let event = ProviderEvent::parse(&verified).map_err(bad_field)?;
    let conn = db::open()?;
    let trace_id = trace_id(req);
    let recorded = store::record(&conn, &event, trace_id.as_deref(), now_ms)
        .map_err(|e| db::unavailable("record payment event", e))?;
    if let Recorded::Announced { message_id } = &recorded {
        publish_now(&conn, message_id);
    }
    Ok(json(200, &ack(&recorded)))
}

fn ack(recorded: &Recorded) -> Ack {
    Ack {
        received: true,
        duplicate: *recorded == Recorded::Duplicate,
        ignored: *recorded == Recorded::Ignored,
    }
}

/// The header value; one that is not text is malformed, not missing.
fn signature_header(req: &Request) -> Result<Option<&str>, Problem> {
    match req.header(SIGNATURE_HEADER) {
        None => Ok(None),
        Some(v) => v
            .as_str()
            .map(Some)
            .ok_or_else(|| bad_signature(SignatureError::Malformed("not ASCII text"))),
    }
}

fn bad_signature(e: SignatureError) -> Problem {
    bad_field(e.into())
}

fn bad_field(e: FieldError) -> Problem {
    Problem::bad_request(&e.field, e.detail)
}

/// The trace id of the delivery's `traceparent`, when a proxy in front added one.
fn trace_id(req: &Request) -> Option<String> {
    let header = req.header("traceparent")?.as_str()?;
    shop_domain::trace::trace_id(header)
}

/// The fast path: the message is committed already, so a failure here only delays it until the
/// compensator's next relay run; the provider still gets its 200.
fn publish_now(conn: &spin_sdk::sqlite::Connection, message_id: &str) {
    let result = config::redis_url().and_then(|url| {
        shop_adapter::outbox::publish_now(
            conn,
            &url,
            &[message_id.to_owned()],
            shop_adapter::outbox::Ring::Now,
        )
    });
    if let Err(e) = result {
        eprintln!("payment-callback: publish {message_id} now failed, left to the relay: {e:#}");
    }
}

//! Payment provider webhooks, Stripe-compatible.
//!
//! A delivery is trusted only after [`WebhookSecrets::verify`] has checked its
//! `Stripe-Signature` header against the raw body bytes: HMAC-SHA256 over `"{t}.{body}"` with the
//! endpoint secret, compared in constant time, and `t` within the tolerance of our clock (so a
//! captured delivery cannot be replayed later). Two secrets may be configured while one is being
//! rotated. Only a [`Verified`] body can be parsed into a [`ProviderEvent`], so no JSON parser ever
//! sees bytes an attacker chose freely.
//!
//! What an event does to the payment record is decided by [`PaymentStatus::after`]: statuses only
//! move forward (FAILED -> SUCCEEDED -> REFUNDED), because the provider does not promise to deliver
//! events in order and a late "failed" must not undo a payment.

use std::fmt;

use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

pub use crate::field::FieldError;
use crate::messages::{PaymentEvent, PaymentFailed, PaymentRefunded, PaymentSucceeded};
use crate::money::{Currency, Money};

/// The header that carries the signature; also the `field` of every signature error.
pub const SIGNATURE_HEADER: &str = "Stripe-Signature";
/// How far (seconds) a signature's `t` may be from our clock, either way, by default.
pub const DEFAULT_TOLERANCE_SECONDS: u64 = 300;
/// Beyond a day the replay window is wide open; a clock that far off needs fixing, not tolerance.
pub const MAX_TOLERANCE_SECONDS: u64 = 86_400;
/// Amounts travel as JSON numbers: above 2^53 - 1 a JavaScript consumer would silently round.
pub const MAX_AMOUNT: i64 = (1 << 53) - 1;

// ---------------------------------------------------------------------------------------------
// Signature
// ---------------------------------------------------------------------------------------------

/// Why a delivery's signature is not accepted. Every variant is the client's (or an attacker's)
/// problem, answered 400 naming [`SIGNATURE_HEADER`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureError {
    Missing,
    Malformed(&'static str),
    NoV1,
    OutsideTolerance {
        timestamp: i64,
        now: i64,
        tolerance: u64,
    },
    NoMatch,
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignatureError::Missing => write!(f, "the {SIGNATURE_HEADER} header is missing"),
            SignatureError::Malformed(why) => {
                write!(f, "the {SIGNATURE_HEADER} header is malformed: {why}")
            }
            SignatureError::NoV1 => write!(f, "the {SIGNATURE_HEADER} header has no v1 signature"),
            SignatureError::OutsideTolerance {
                timestamp,
                now,
                tolerance,
            } => write!(
                f,
                "the signature timestamp {timestamp} is more than {tolerance} s away from now ({now})"
            ),
            SignatureError::NoMatch => {
                write!(f, "no v1 signature matches the body under the endpoint secret")
            }
        }
    }
}

impl std::error::Error for SignatureError {}

impl From<SignatureError> for FieldError {
    fn from(e: SignatureError) -> Self {
        FieldError::new(SIGNATURE_HEADER, e.to_string())
    }
}

/// The parts of a `Stripe-Signature` value we use. `t` is kept as sent because the provider signed
/// exactly those characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeader<'a> {
    pub t: &'a str,
    pub timestamp: i64,
    /// The `v1` values that are 64 hex digits, decoded.
    pub v1: Vec<[u8; 32]>,
    /// How many `v1` elements there were, decodable or not.
    pub v1_count: usize,
}

impl<'a> SignatureHeader<'a> {
    /// `t=<unix seconds>,v1=<hex>[,v1=<hex>...]`; whitespace around elements is ignored, and so
    /// are other keys (`v0`, future schemes), as the provider's own libraries do.
    pub fn parse(value: &'a str) -> Result<Self, SignatureError> {
        let mut t = None;
        let mut v1 = Vec::new();
        let mut v1_count = 0;
        for element in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (key, val) = element
                .split_once('=')
                .ok_or(SignatureError::Malformed("an element has no `=`"))?;
            match key.trim() {
                "t" if t.is_some() => return Err(SignatureError::Malformed("`t` appears twice")),
                "t" => t = Some(val.trim()),
                "v1" => {
                    v1_count += 1;
                    // A value that is not a SHA-256 in hex can never match: it is counted (so the
                    // answer is "no match", not "no v1") but not compared.
                    if let Some(sig) = decode_hex_32(val.trim()) {
                        v1.push(sig);
                    }
                }
                _ => {}
            }
        }
        let t = t.ok_or(SignatureError::Malformed("no `t=` timestamp"))?;
        let timestamp = parse_unix_seconds(t).ok_or(SignatureError::Malformed(
            "`t` must be Unix seconds (digits only)",
        ))?;
        Ok(SignatureHeader {
            t,
            timestamp,
            v1,
            v1_count,
        })
    }
}

/// 1-18 ASCII digits (so it always fits an i64).
fn parse_unix_seconds(s: &str) -> Option<i64> {
    if s.is_empty() || s.len() > 18 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// 64 hex digits (either case) as 32 bytes.
fn decode_hex_32(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 32];
    for (i, pair) in b.chunks_exact(2).enumerate() {
        out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

/// Why the webhook configuration is unusable: the operator's mistake, never the client's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// The endpoint secrets (the current one and, during a rotation, the previous one) and the
/// timestamp tolerance.
#[derive(Clone)]
pub struct WebhookSecrets {
    keys: Vec<Vec<u8>>,
    tolerance: u64,
}

// Hand-written so the secrets never reach a log through `{:?}`.
impl fmt::Debug for WebhookSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSecrets")
            .field("keys", &format_args!("[{} redacted]", self.keys.len()))
            .field("tolerance", &self.tolerance)
            .finish()
    }
}

/// A body whose signature has been checked; the only way to a [`ProviderEvent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified<'b> {
    pub timestamp: i64,
    body: &'b [u8],
}

impl<'b> Verified<'b> {
    pub fn body(&self) -> &'b [u8] {
        self.body
    }
}

impl WebhookSecrets {
    /// `current` must not be empty: an unset secret must never mean "accept anything". An empty
    /// `previous` means there is none.
    pub fn new(current: &str, previous: Option<&str>, tolerance: u64) -> Result<Self, ConfigError> {
        if current.is_empty() {
            return Err(ConfigError("webhook_secret must not be empty".into()));
        }
        if tolerance == 0 || tolerance > MAX_TOLERANCE_SECONDS {
            return Err(ConfigError(format!(
                "webhook_tolerance_seconds must be 1-{MAX_TOLERANCE_SECONDS}"
            )));
        }
        let mut keys = vec![current.as_bytes().to_vec()];
        keys.extend(
            previous
                .filter(|p| !p.is_empty())
                .map(|p| p.as_bytes().to_vec()),
        );
        Ok(WebhookSecrets { keys, tolerance })
    }

    /// The tolerance setting as configured: empty means the default.
    pub fn parse_tolerance(s: &str) -> Result<u64, ConfigError> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(DEFAULT_TOLERANCE_SECONDS);
        }
        s.parse()
            .map_err(|_| ConfigError(format!("webhook_tolerance_seconds is not a number: {s:?}")))
    }

    pub fn tolerance(&self) -> u64 {
        self.tolerance
    }

    /// Checks `header` (the `Stripe-Signature` value, `None` when absent) against the raw `body`
    /// at `now` (Unix seconds). The signature is checked before the timestamp, so "outside
    /// tolerance" is only ever said of an authentic delivery (a replay or a skewed clock) and a
    /// forger learns nothing from it.
    pub fn verify<'b>(
        &self,
        header: Option<&str>,
        body: &'b [u8],
        now: i64,
    ) -> Result<Verified<'b>, SignatureError> {
        let parsed = SignatureHeader::parse(header.ok_or(SignatureError::Missing)?)?;
        if parsed.v1_count == 0 {
            return Err(SignatureError::NoV1);
        }
        let matched = self.keys.iter().any(|key| {
            let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
                return false; // HMAC takes keys of any length; kept total all the same
            };
            mac.update(parsed.t.as_bytes());
            mac.update(b".");
            mac.update(body);
            // `verify_slice` compares in constant time; which candidate matched is no secret.
            parsed
                .v1
                .iter()
                .any(|sig| mac.clone().verify_slice(sig).is_ok())
        });
        if !matched {
            return Err(SignatureError::NoMatch);
        }
        if now.abs_diff(parsed.timestamp) > self.tolerance {
            return Err(SignatureError::OutsideTolerance {
                timestamp: parsed.timestamp,
                now,
                tolerance: self.tolerance,
            });
        }
        Ok(Verified {
            timestamp: parsed.timestamp,
            body,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------------

/// A provider's identifier (event `evt_...`, payment intent `pi_...`, charge `ch_...`): 1-255
/// visible ASCII characters, so it is safe as a database key and in a log line.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct ProviderId(String);

impl ProviderId {
    pub const MAX_LEN: usize = 255;

    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.len() > Self::MAX_LEN {
            return Err(format!("must be 1-{} characters", Self::MAX_LEN));
        }
        if !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("must be visible ASCII without spaces".into());
        }
        Ok(ProviderId(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

crate::deserialize_by_parse!(ProviderId);

impl fmt::Display for ProviderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The shop's order id as the payment's metadata carries it: 1-128 characters of
/// `A-Z a-z 0-9 - _ . :`, so it is safe as an aggregate id, a Redis key part and a URL segment.
/// The exact order-id format is the order component's business, not checked here.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct OrderRef(String);

impl OrderRef {
    pub const MAX_LEN: usize = 128;

    pub fn parse(s: &str) -> Result<Self, String> {
        crate::key_safe::check(s, Self::MAX_LEN, false)?;
        Ok(OrderRef(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OrderRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A verified, parsed provider event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderEvent {
    pub id: ProviderId,
    /// When the provider created the event, Unix seconds.
    pub created: i64,
    pub kind: PaymentEventKind,
}

/// What happened, for the event types the shop acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentEventKind {
    /// `payment_intent.succeeded`
    Succeeded {
        intent_id: ProviderId,
        order_id: OrderRef,
        amount: Money,
    },
    /// `payment_intent.payment_failed`; `reason` is the provider's `last_payment_error`.
    Failed {
        intent_id: ProviderId,
        order_id: OrderRef,
        amount: Money,
        reason: Option<String>,
    },
    /// `charge.refunded`; `amount_refunded` is the total refunded so far (refunds may be partial).
    Refunded {
        charge_id: ProviderId,
        intent_id: ProviderId,
        order_id: OrderRef,
        amount: Money,
        amount_refunded: Money,
    },
    /// Any other type: acknowledged, recorded as seen, otherwise ignored.
    Other(String),
}

impl PaymentEventKind {
    /// The provider's name of the event type (`payment_intent.succeeded`, ...).
    pub fn provider_type(&self) -> &str {
        match self {
            PaymentEventKind::Succeeded { .. } => "payment_intent.succeeded",
            PaymentEventKind::Failed { .. } => "payment_intent.payment_failed",
            PaymentEventKind::Refunded { .. } => "charge.refunded",
            PaymentEventKind::Other(t) => t,
        }
    }

    /// The payment intent, order and status this event is about; `None` for [`Self::Other`].
    pub fn subject(&self) -> Option<(&ProviderId, &OrderRef, PaymentStatus)> {
        match self {
            PaymentEventKind::Succeeded {
                intent_id,
                order_id,
                ..
            } => Some((intent_id, order_id, PaymentStatus::Succeeded)),
            PaymentEventKind::Failed {
                intent_id,
                order_id,
                ..
            } => Some((intent_id, order_id, PaymentStatus::Failed)),
            PaymentEventKind::Refunded {
                intent_id,
                order_id,
                ..
            } => Some((intent_id, order_id, PaymentStatus::Refunded)),
            PaymentEventKind::Other(_) => None,
        }
    }
}

/// The longest failure reason kept; the provider's messages are a sentence or two.
const MAX_REASON_CHARS: usize = 500;

impl ProviderEvent {
    /// Parses a verified body. Errors name the JSON path (`data.object.metadata.order_id`);
    /// a body that is not a JSON object is `body`.
    pub fn parse(verified: &Verified<'_>) -> Result<Self, FieldError> {
        Self::parse_json(verified.body)
    }

    /// The message announcing this event to the other contexts (topic `payments`); `None`
    /// for event types the shop ignores. Amounts are minor units, currencies upper case.
    pub fn message(&self) -> Option<PaymentEvent> {
        let event_id = self.id.clone();
        Some(match &self.kind {
            PaymentEventKind::Succeeded {
                intent_id,
                order_id,
                amount,
            } => PaymentEvent::PaymentSucceeded(PaymentSucceeded {
                order_id: order_id.as_str().to_owned(),
                payment_intent_id: intent_id.clone(),
                amount: *amount,
                event_id,
            }),
            PaymentEventKind::Failed {
                intent_id,
                order_id,
                amount,
                reason,
            } => PaymentEvent::PaymentFailed(PaymentFailed {
                order_id: order_id.as_str().to_owned(),
                payment_intent_id: intent_id.clone(),
                amount: *amount,
                event_id,
                reason: reason.clone(),
            }),
            PaymentEventKind::Refunded {
                charge_id,
                intent_id,
                order_id,
                amount,
                amount_refunded,
            } => PaymentEvent::PaymentRefunded(PaymentRefunded {
                order_id: order_id.as_str().to_owned(),
                payment_intent_id: intent_id.clone(),
                amount: *amount,
                event_id,
                charge_id: charge_id.clone(),
                amount_refunded: amount_refunded.minor(),
            }),
            PaymentEventKind::Other(_) => return None,
        })
    }

    /// The payload of [`ProviderEvent::message`] as it travels.
    pub fn payload(&self) -> Option<Value> {
        let message = self.message()?;
        crate::messages::encode(&message).ok().map(|(_, p)| p)
    }

    fn parse_json(body: &[u8]) -> Result<Self, FieldError> {
        let root = match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return Err(FieldError::new("body", "the event must be a JSON object")),
            Err(e) => return Err(FieldError::new("body", format!("not valid JSON: {e}"))),
        };
        let root = Obj::root(&root);
        let id = root.id("id")?;
        let type_ = root.str("type")?;
        let created = root.i64("created")?;
        if created < 0 {
            return Err(FieldError::new(
                "created",
                "must be Unix seconds, not negative",
            ));
        }
        let kind = match type_ {
            "payment_intent.succeeded" | "payment_intent.payment_failed" => {
                let object = root.obj("data")?.obj("object")?;
                parse_intent(&object, type_ == "payment_intent.succeeded")?
            }
            "charge.refunded" => parse_charge(&root.obj("data")?.obj("object")?)?,
            other => PaymentEventKind::Other(other.to_owned()),
        };
        Ok(ProviderEvent { id, created, kind })
    }
}

fn parse_intent(object: &Obj<'_>, succeeded: bool) -> Result<PaymentEventKind, FieldError> {
    object.expect_object_type("payment_intent")?;
    let intent_id = object.id("id")?;
    let amount = object.money("amount", "currency")?;
    let order_id = object.order_ref()?;
    if succeeded {
        return Ok(PaymentEventKind::Succeeded {
            intent_id,
            order_id,
            amount,
        });
    }
    // Optional and free text: a missing or odd reason never fails the event.
    let reason = object.opt_obj("last_payment_error")?.and_then(|e| {
        let text = e.opt_str("message").or_else(|| e.opt_str("code"))?;
        Some(text.chars().take(MAX_REASON_CHARS).collect())
    });
    Ok(PaymentEventKind::Failed {
        intent_id,
        order_id,
        amount,
        reason,
    })
}

fn parse_charge(object: &Obj<'_>) -> Result<PaymentEventKind, FieldError> {
    object.expect_object_type("charge")?;
    let charge_id = object.id("id")?;
    let amount = object.money("amount", "currency")?;
    let amount_refunded = object.money("amount_refunded", "currency")?;
    if amount_refunded.minor() > amount.minor() {
        return Err(object.error("amount_refunded", "must not exceed `amount`"));
    }
    // A charge made without a payment intent is nothing the shop created: there is no payment
    // record to refund, so it is refused rather than guessed.
    let intent_id = object.id("payment_intent")?;
    let order_id = object.order_ref()?;
    Ok(PaymentEventKind::Refunded {
        charge_id,
        intent_id,
        order_id,
        amount,
        amount_refunded,
    })
}

/// A JSON object and its path in the event, so every error names where it is.
struct Obj<'a> {
    path: String,
    map: &'a Map<String, Value>,
}

impl<'a> Obj<'a> {
    fn root(map: &'a Map<String, Value>) -> Self {
        Obj {
            path: String::new(),
            map,
        }
    }

    fn path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn error(&self, key: &str, detail: &str) -> FieldError {
        let path = self.path(key);
        FieldError::new(&path, format!("`{path}` {detail}"))
    }

    /// `null` counts as absent.
    fn required(&self, key: &str) -> Result<&'a Value, FieldError> {
        self.map
            .get(key)
            .filter(|v| !v.is_null())
            .ok_or_else(|| self.error(key, "is required"))
    }

    fn str(&self, key: &str) -> Result<&'a str, FieldError> {
        self.required(key)?
            .as_str()
            .ok_or_else(|| self.error(key, "must be a string"))
    }

    fn opt_str(&self, key: &str) -> Option<&'a str> {
        self.map.get(key).and_then(Value::as_str)
    }

    /// JSON does not tell `3` from `3.0`: an integral number below 2^53 (exact in an f64) is
    /// that integer; a fraction, or an inexact or larger float, is refused.
    fn i64(&self, key: &str) -> Result<i64, FieldError> {
        let v = self.required(key)?;
        v.as_i64()
            .or_else(|| {
                let f = v.as_f64()?;
                (f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0).then_some(f as i64)
            })
            .ok_or_else(|| self.error(key, "must be an integer"))
    }

    fn obj(&self, key: &str) -> Result<Obj<'a>, FieldError> {
        match self.required(key)? {
            Value::Object(map) => Ok(Obj {
                path: self.path(key),
                map,
            }),
            _ => Err(self.error(key, "must be an object")),
        }
    }

    fn opt_obj(&self, key: &str) -> Result<Option<Obj<'a>>, FieldError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(_) => self.obj(key).map(Some),
        }
    }

    fn id(&self, key: &str) -> Result<ProviderId, FieldError> {
        ProviderId::parse(self.str(key)?).map_err(|e| self.error(key, &e))
    }

    fn order_ref(&self) -> Result<OrderRef, FieldError> {
        let metadata = self.obj("metadata")?;
        OrderRef::parse(metadata.str("order_id")?).map_err(|e| metadata.error("order_id", &e))
    }

    /// The `object` discriminator, so a charge is never read as a payment intent.
    fn expect_object_type(&self, expected: &str) -> Result<(), FieldError> {
        match self.str("object")? {
            t if t == expected => Ok(()),
            _ => Err(self.error(
                "object",
                &format!("must be {expected:?} for this event type"),
            )),
        }
    }

    /// An amount in minor units, 0..=2^53-1, in the currency at `currency_key`. The provider
    /// writes currencies in lower case; the shop's [`Currency`] is upper case.
    fn money(&self, amount_key: &str, currency_key: &str) -> Result<Money, FieldError> {
        let minor = self.i64(amount_key)?;
        if !(0..=MAX_AMOUNT).contains(&minor) {
            return Err(self.error(amount_key, "must be an integer from 0 to 2^53-1"));
        }
        let currency = Currency::parse(&self.str(currency_key)?.to_ascii_uppercase())
            .map_err(|_| self.error(currency_key, "must be an ISO 4217 code such as \"eur\""))?;
        Money::new(minor, currency).map_err(|e| self.error(amount_key, &e.to_string()))
    }
}

// ---------------------------------------------------------------------------------------------
// The payment record
// ---------------------------------------------------------------------------------------------

/// Where a payment intent stands, as far as the shop has heard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PaymentStatus {
    // Declared in the order a payment moves through them: `after` relies on it.
    Failed,
    Succeeded,
    Refunded,
}

/// What an event does to a payment record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Write the record and announce the event (outbox).
    Apply(PaymentStatus),
    /// Nothing new (a repeat of the current state, or an event older than it): record that the
    /// event was seen, change nothing, announce nothing.
    Ignore,
}

impl PaymentStatus {
    pub const ALL: [PaymentStatus; 3] = [
        PaymentStatus::Failed,
        PaymentStatus::Succeeded,
        PaymentStatus::Refunded,
    ];

    /// The database spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            PaymentStatus::Failed => "FAILED",
            PaymentStatus::Succeeded => "SUCCEEDED",
            PaymentStatus::Refunded => "REFUNDED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// The outbox message type announcing that a payment reached this status.
    pub fn event_type(&self) -> &'static str {
        match self {
            PaymentStatus::Failed => "PaymentFailed",
            PaymentStatus::Succeeded => "PaymentSucceeded",
            PaymentStatus::Refunded => "PaymentRefunded",
        }
    }

    /// The effect of an event reporting `incoming` on a record in `current` (`None`: no record
    /// yet). Forward moves apply; so does a repeated failure (each is a new declined attempt the
    /// order may want to tell the customer about) and a refund that grows (a further partial
    /// refund: `refund_grew`). A backward move is a late delivery and is ignored.
    pub fn after(current: Option<Self>, incoming: Self, refund_grew: bool) -> Transition {
        match current {
            None => Transition::Apply(incoming),
            Some(cur) if incoming > cur => Transition::Apply(incoming),
            Some(PaymentStatus::Failed) if incoming == PaymentStatus::Failed => {
                Transition::Apply(incoming)
            }
            Some(PaymentStatus::Refunded) if incoming == PaymentStatus::Refunded && refund_grew => {
                Transition::Apply(incoming)
            }
            Some(_) => Transition::Ignore,
        }
    }
}

impl fmt::Display for PaymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test_secret";
    const OLD_SECRET: &str = "whsec_old_secret";
    const T: i64 = 1_700_000_000;
    const VECTOR_BODY: &[u8] = br#"{"id":"evt_1","object":"event"}"#;
    // Computed outside Rust, so the test does not just agree with itself:
    // python3 -c 'import hmac,hashlib; print(hmac.new(b"whsec_test_secret",
    //   b"1700000000." + b"{\"id\":\"evt_1\",\"object\":\"event\"}", hashlib.sha256).hexdigest())'
    const VECTOR_SIG: &str = "0c8670ed117751cc551a20e35839447075c42800ea3cf3e8a2fbda99cd1e6edd";
    // The same with b"whsec_old_secret".
    const VECTOR_SIG_OLD: &str = "921476aa6febf6d11353fcee45246000c9edf7b3938ae2d09a2d6ea5cb98d9db";

    fn secrets() -> WebhookSecrets {
        WebhookSecrets::new(SECRET, None, DEFAULT_TOLERANCE_SECONDS).unwrap()
    }

    fn sign(secret: &str, t: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn verify(header: &str, body: &[u8], now: i64) -> Result<i64, SignatureError> {
        secrets()
            .verify(Some(header), body, now)
            .map(|v| v.timestamp)
    }

    #[test]
    fn accepts_the_independently_computed_vector() {
        assert_eq!(sign(SECRET, T, VECTOR_BODY), VECTOR_SIG);
        let header = format!("t={T},v1={VECTOR_SIG}");
        assert_eq!(verify(&header, VECTOR_BODY, T), Ok(T));
        // Upper-case hex, whitespace, a v0 and an unknown key are all fine.
        let header = format!(
            " t = {T} , v0=abc, v1={} ,foo=bar,",
            VECTOR_SIG.to_uppercase()
        );
        assert_eq!(verify(&header, VECTOR_BODY, T + 10), Ok(T));
    }

    #[test]
    fn any_v1_under_any_configured_secret_matches() {
        let rotating = WebhookSecrets::new(SECRET, Some(OLD_SECRET), 300).unwrap();
        let bad = "00".repeat(32);
        for sig in [VECTOR_SIG, VECTOR_SIG_OLD] {
            let header = format!("t={T},v1={bad},v1={sig}");
            assert!(rotating.verify(Some(&header), VECTOR_BODY, T).is_ok());
        }
        // Without the previous secret configured, its signature does not count.
        let header = format!("t={T},v1={VECTOR_SIG_OLD}");
        assert_eq!(
            verify(&header, VECTOR_BODY, T),
            Err(SignatureError::NoMatch)
        );
        // An empty previous secret is no secret.
        let one = WebhookSecrets::new(SECRET, Some(""), 300).unwrap();
        assert_eq!(one.keys.len(), 1);
    }

    #[test]
    fn names_each_failure() {
        let ok = format!("t={T},v1={VECTOR_SIG}");
        assert_eq!(
            secrets().verify(None, VECTOR_BODY, T),
            Err(SignatureError::Missing)
        );
        for bad in [
            "",
            "garbage",
            "v1=ab",
            "t=12a,v1=ab",
            "t=-5,v1=ab",
            "t=1,t=2,v1=ab",
        ] {
            assert!(
                matches!(
                    verify(bad, VECTOR_BODY, T),
                    Err(SignatureError::Malformed(_))
                ),
                "{bad}"
            );
        }
        let no_v1 = format!("t={T},v0={VECTOR_SIG}");
        assert_eq!(verify(&no_v1, VECTOR_BODY, T), Err(SignatureError::NoV1));
        let not_hex = format!("t={T},v1=zz{}", &VECTOR_SIG[2..]);
        assert_eq!(
            verify(&not_hex, VECTOR_BODY, T),
            Err(SignatureError::NoMatch)
        );
        assert_eq!(verify(&ok, b"{}", T), Err(SignatureError::NoMatch));
        let late = verify(&ok, VECTOR_BODY, T + 301);
        assert!(matches!(late, Err(SignatureError::OutsideTolerance { .. })));
        let early = verify(&ok, VECTOR_BODY, T - 301);
        assert!(matches!(
            early,
            Err(SignatureError::OutsideTolerance { .. })
        ));
        assert!(verify(&ok, VECTOR_BODY, T + 300).is_ok());
        assert!(verify(&ok, VECTOR_BODY, T - 300).is_ok());
        let field: FieldError = SignatureError::NoMatch.into();
        assert_eq!(field.field, "Stripe-Signature");
    }

    #[test]
    fn a_forged_stale_delivery_is_no_match_not_outside_tolerance() {
        let header = format!("t={},v1={VECTOR_SIG}", T - 10_000);
        assert_eq!(
            verify(&header, VECTOR_BODY, T),
            Err(SignatureError::NoMatch)
        );
    }

    #[test]
    fn configuration_is_checked() {
        assert!(WebhookSecrets::new("", None, 300).is_err());
        assert!(WebhookSecrets::new("s", None, 0).is_err());
        assert!(WebhookSecrets::new("s", None, MAX_TOLERANCE_SECONDS + 1).is_err());
        assert_eq!(WebhookSecrets::parse_tolerance(""), Ok(300));
        assert_eq!(WebhookSecrets::parse_tolerance(" 60 "), Ok(60));
        assert!(WebhookSecrets::parse_tolerance("5m").is_err());
        let debug = format!("{:?}", secrets());
        assert!(!debug.contains(SECRET), "{debug}");
    }

    proptest::proptest! {
        #[test]
        fn a_body_changed_in_one_byte_fails(
            body in proptest::collection::vec(proptest::num::u8::ANY, 1..300),
            index in proptest::prelude::any::<proptest::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let header = format!("t={T},v1={}", sign(SECRET, T, &body));
            proptest::prop_assert!(verify(&header, &body, T).is_ok());
            let mut changed = body.clone();
            let i = index.index(changed.len());
            changed[i] ^= flip;
            proptest::prop_assert_eq!(verify(&header, &changed, T), Err(SignatureError::NoMatch));
        }

        #[test]
        fn header_parsing_never_panics(s in "\\PC{0,120}") {
            let _ = verify(&s, VECTOR_BODY, T);
        }
    }

    // --- events ---

    fn intent_event(type_: &str, object: Value) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "id": "evt_123", "object": "event", "type": type_, "created": T,
            "data": { "object": object }
        }))
        .unwrap()
    }

    fn intent(amount: Value, currency: &str, order_id: Value) -> Value {
        serde_json::json!({
            "id": "pi_1", "object": "payment_intent", "amount": amount, "currency": currency,
            "metadata": { "order_id": order_id }
        })
    }

    fn parse(body: &[u8]) -> Result<ProviderEvent, FieldError> {
        ProviderEvent::parse_json(body)
    }

    fn eur(minor: i64) -> Money {
        Money::new(minor, Currency::parse("EUR").unwrap()).unwrap()
    }

    #[test]
    fn parses_a_succeeded_intent_with_lower_case_currency() {
        let body = intent_event(
            "payment_intent.succeeded",
            intent(2599.into(), "eur", "ord_1".into()),
        );
        let event = parse(&body).unwrap();
        assert_eq!(event.id.as_str(), "evt_123");
        assert_eq!(event.created, T);
        assert_eq!(
            event.kind,
            PaymentEventKind::Succeeded {
                intent_id: ProviderId::parse("pi_1").unwrap(),
                order_id: OrderRef::parse("ord_1").unwrap(),
                amount: eur(2599),
            }
        );
    }

    #[test]
    fn parses_a_failed_intent_with_and_without_reason() {
        let mut object = intent(100.into(), "EUR", "ord_1".into());
        let body = intent_event("payment_intent.payment_failed", object.clone());
        assert!(matches!(
            parse(&body).unwrap().kind,
            PaymentEventKind::Failed { reason: None, .. }
        ));
        object["last_payment_error"] =
            serde_json::json!({"code": "card_declined", "message": "Your card was declined."});
        let body = intent_event("payment_intent.payment_failed", object);
        let PaymentEventKind::Failed { reason, amount, .. } = parse(&body).unwrap().kind else {
            panic!("not Failed");
        };
        assert_eq!(reason.as_deref(), Some("Your card was declined."));
        assert_eq!(amount, eur(100));
    }

    #[test]
    fn integral_numbers_with_a_fraction_or_exponent_are_integers() {
        let body = intent_event(
            "payment_intent.succeeded",
            intent(serde_json::json!(100.0), "EUR", "ord_1".into()),
        );
        let PaymentEventKind::Succeeded { amount, .. } = parse(&body).unwrap().kind else {
            panic!("not Succeeded");
        };
        assert_eq!(amount, eur(100));
        for bad in [serde_json::json!(100.5), serde_json::json!(1e300)] {
            let body = intent_event(
                "payment_intent.succeeded",
                intent(bad, "EUR", "ord_1".into()),
            );
            assert_eq!(parse(&body).unwrap_err().field, "data.object.amount");
        }
    }

    #[test]
    fn parses_a_refunded_charge() {
        let charge = serde_json::json!({
            "id": "ch_1", "object": "charge", "amount": 1000, "amount_refunded": 400,
            "currency": "usd", "payment_intent": "pi_1", "metadata": {"order_id": "ord_1"}
        });
        let kind = parse(&intent_event("charge.refunded", charge.clone()))
            .unwrap()
            .kind;
        let PaymentEventKind::Refunded {
            charge_id,
            intent_id,
            amount_refunded,
            ..
        } = kind
        else {
            panic!("not Refunded");
        };
        assert_eq!((charge_id.as_str(), intent_id.as_str()), ("ch_1", "pi_1"));
        assert_eq!(amount_refunded.minor(), 400);
        assert_eq!(amount_refunded.currency().as_str(), "USD");

        let mut over = charge.clone();
        over["amount_refunded"] = 1001.into();
        let err = parse(&intent_event("charge.refunded", over)).unwrap_err();
        assert_eq!(err.field, "data.object.amount_refunded");
        let mut no_intent = charge;
        no_intent["payment_intent"] = Value::Null;
        let err = parse(&intent_event("charge.refunded", no_intent)).unwrap_err();
        assert_eq!(err.field, "data.object.payment_intent");
    }

    #[test]
    fn other_types_need_only_id_type_and_created() {
        let event = parse(br#"{"id":"evt_9","type":"customer.created","created":5}"#).unwrap();
        assert_eq!(
            event.kind,
            PaymentEventKind::Other("customer.created".into())
        );
        assert_eq!(event.kind.subject(), None);
    }

    #[test]
    fn errors_name_the_json_path() {
        let field = |body: Vec<u8>| parse(&body).unwrap_err().field;
        let succeeded = |o| intent_event("payment_intent.succeeded", o);
        assert_eq!(field(b"not json".to_vec()), "body");
        assert_eq!(field(b"[1]".to_vec()), "body");
        assert_eq!(field(br#"{"type":"x","created":1}"#.to_vec()), "id");
        assert_eq!(field(br#"{"id":"e","created":1}"#.to_vec()), "type");
        assert_eq!(field(br#"{"id":"e","type":"x"}"#.to_vec()), "created");
        assert_eq!(
            field(br#"{"id":"e","type":"x","created":-1}"#.to_vec()),
            "created"
        );
        assert_eq!(field(br#"{"id":"","type":"x","created":1}"#.to_vec()), "id");
        assert_eq!(
            field(br#"{"id":"e","type":"charge.refunded","created":1}"#.to_vec()),
            "data"
        );
        let missing_order = succeeded(serde_json::json!({
            "id": "pi_1", "object": "payment_intent", "amount": 1, "currency": "eur", "metadata": {}
        }));
        assert_eq!(field(missing_order), "data.object.metadata.order_id");
        assert_eq!(
            field(succeeded(intent(1.into(), "eur", "ord 1".into()))),
            "data.object.metadata.order_id"
        );
        assert_eq!(
            field(succeeded(intent(1.into(), "eur", 7.into()))),
            "data.object.metadata.order_id"
        );
        assert_eq!(
            field(succeeded(intent((-1).into(), "eur", "o".into()))),
            "data.object.amount"
        );
        assert_eq!(
            field(succeeded(intent(1.5.into(), "eur", "o".into()))),
            "data.object.amount"
        );
        assert_eq!(
            field(succeeded(intent("1".into(), "eur", "o".into()))),
            "data.object.amount"
        );
        assert_eq!(
            field(succeeded(intent(
                (MAX_AMOUNT + 1).into(),
                "eur",
                "o".into()
            ))),
            "data.object.amount"
        );
        assert!(parse(&succeeded(intent(MAX_AMOUNT.into(), "eur", "o".into()))).is_ok());
        assert!(parse(&succeeded(intent(0.into(), "eur", "o".into()))).is_ok());
        assert_eq!(
            field(succeeded(intent(1.into(), "euro", "o".into()))),
            "data.object.currency"
        );
        let mut charge = intent(1.into(), "eur", "o".into());
        charge["object"] = "charge".into();
        assert_eq!(field(succeeded(charge)), "data.object.object");
    }

    #[test]
    fn only_a_verified_body_is_parsed() {
        let body = intent_event(
            "payment_intent.succeeded",
            intent(5.into(), "eur", "o".into()),
        );
        let header = format!("t={T},v1={}", sign(SECRET, T, &body));
        let verified = secrets().verify(Some(&header), &body, T).unwrap();
        assert_eq!(verified.body(), body.as_slice());
        assert!(ProviderEvent::parse(&verified).is_ok());
    }

    #[test]
    fn payloads_carry_what_the_order_context_reads() {
        let body = intent_event(
            "payment_intent.succeeded",
            intent(2599.into(), "eur", "ord_1".into()),
        );
        let event = parse(&body).unwrap();
        assert_eq!(event.kind.provider_type(), "payment_intent.succeeded");
        assert_eq!(
            event.payload().unwrap(),
            serde_json::json!({"order_id": "ord_1", "payment_intent_id": "pi_1", "amount": 2599,
                               "currency": "EUR", "event_id": "evt_123"})
        );
        let mut failed = intent(5.into(), "eur", "ord_1".into());
        failed["last_payment_error"] = serde_json::json!({"code": "card_declined"});
        let event = parse(&intent_event("payment_intent.payment_failed", failed)).unwrap();
        assert_eq!(event.payload().unwrap()["reason"], "card_declined");
        assert_eq!(event.kind.provider_type(), "payment_intent.payment_failed");
        let charge = serde_json::json!({
            "id": "ch_1", "object": "charge", "amount": 1000, "amount_refunded": 1000,
            "currency": "usd", "payment_intent": "pi_1", "metadata": {"order_id": "ord_1"}
        });
        let event = parse(&intent_event("charge.refunded", charge)).unwrap();
        let payload = event.payload().unwrap();
        assert_eq!(
            (
                payload["charge_id"].as_str(),
                payload["amount_refunded"].as_i64()
            ),
            (Some("ch_1"), Some(1000))
        );
        assert_eq!(payload["currency"], "USD");
        let other = parse(br#"{"id":"evt_9","type":"customer.created","created":5}"#).unwrap();
        assert_eq!(other.payload(), None);
        assert_eq!(other.kind.provider_type(), "customer.created");
    }

    #[test]
    fn statuses_only_move_forward() {
        use PaymentStatus::*;
        use Transition::*;
        assert_eq!(PaymentStatus::after(None, Failed, false), Apply(Failed));
        assert_eq!(
            PaymentStatus::after(Some(Failed), Succeeded, false),
            Apply(Succeeded)
        );
        assert_eq!(
            PaymentStatus::after(Some(Failed), Failed, false),
            Apply(Failed)
        );
        assert_eq!(
            PaymentStatus::after(Some(Succeeded), Refunded, false),
            Apply(Refunded)
        );
        assert_eq!(
            PaymentStatus::after(Some(Refunded), Refunded, true),
            Apply(Refunded)
        );
        assert_eq!(
            PaymentStatus::after(Some(Refunded), Refunded, false),
            Ignore
        );
        assert_eq!(
            PaymentStatus::after(Some(Succeeded), Succeeded, false),
            Ignore
        );
        assert_eq!(PaymentStatus::after(Some(Succeeded), Failed, false), Ignore);
        assert_eq!(
            PaymentStatus::after(Some(Refunded), Succeeded, false),
            Ignore
        );
        for s in PaymentStatus::ALL {
            assert_eq!(PaymentStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(Succeeded.event_type(), "PaymentSucceeded");
    }
}

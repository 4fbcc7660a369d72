//! Idempotency-Key rules for order creation (as Stripe and the IETF Idempotency-Key draft):
//!
//! - a key is 1-255 visible ASCII characters;
//! - a request is identified by a *fingerprint* of its parsed content, so the same order sent
//!   with other whitespace or key order is the same request, and any change of content is not;
//! - the reservation the order makes at the stock component has an id derived from the key and
//!   an attempt number, so a retry after a crash reuses the very same reservation (the stock
//!   component answers a known id with the same result and never deducts twice), while a retry
//!   after a *released* reservation (the order write failed) uses a fresh one;
//! - [`decide`] says what a request does given the stored claim, if any.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::new_order::{NewOrder, UserId};

/// A client's Idempotency-Key header value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    Empty,
    TooLong,
    BadChar,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Empty => write!(f, "Idempotency-Key must not be empty"),
            KeyError::TooLong => write!(
                f,
                "Idempotency-Key must be at most {} characters",
                IdempotencyKey::MAX_LEN
            ),
            KeyError::BadChar => write!(
                f,
                "Idempotency-Key must consist of visible ASCII characters (and spaces)"
            ),
        }
    }
}

impl std::error::Error for KeyError {}

impl IdempotencyKey {
    pub const MAX_LEN: usize = 255;

    pub fn parse(s: &str) -> Result<Self, KeyError> {
        if s.is_empty() {
            return Err(KeyError::Empty);
        }
        if s.len() > Self::MAX_LEN {
            return Err(KeyError::TooLong);
        }
        if !s.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
            return Err(KeyError::BadChar);
        }
        if s.trim().is_empty() {
            return Err(KeyError::Empty);
        }
        Ok(IdempotencyKey(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id of the stock reservation of attempt `attempt` under this key: `rsv-` and 40 hex
    /// digits of SHA-256, so it is URL- and Redis-key-safe whatever the key contains.
    pub fn reservation_id(&self, attempt: i64) -> String {
        let digest = sha256_hex(&format!("reservation\n{attempt}\n{}", self.0));
        format!("rsv-{}", &digest[..40])
    }
}

/// An Idempotency-Key in the scope of the customer who sent it: two customers' equal keys are
/// two claims, so one cannot learn that another used a key, nor block another's order by
/// claiming a predictable key first.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClaimKey {
    /// `None` for a claim stored before keys were scoped (its reservation ids are the key's own).
    owner: Option<UserId>,
    key: IdempotencyKey,
}

impl ClaimKey {
    pub fn new(owner: UserId, key: IdempotencyKey) -> Self {
        ClaimKey {
            owner: Some(owner),
            key,
        }
    }

    /// A claim stored before keys were scoped: it keeps the reservation ids it was made with.
    pub fn unscoped(key: IdempotencyKey) -> Self {
        ClaimKey { owner: None, key }
    }

    /// Whether the claim belongs to a customer (every claim made since keys were scoped).
    pub fn is_scoped(&self) -> bool {
        self.owner.is_some()
    }

    /// The owner as stored (`""` for an unscoped claim: a user id is never empty).
    pub fn owner_str(&self) -> &str {
        self.owner.as_ref().map_or("", UserId::as_str)
    }

    /// The inverse of ([`Self::owner_str`], key): `""` is unscoped.
    pub fn from_stored(owner: &str, key: &str) -> Option<Self> {
        let key = IdempotencyKey::parse(key).ok()?;
        match owner {
            "" => Some(Self::unscoped(key)),
            o => Some(Self::new(UserId::parse(o).ok()?, key)),
        }
    }

    pub fn key(&self) -> &IdempotencyKey {
        &self.key
    }

    /// The claim as one text, unique per (owner, key): `<owner>\n<key>` (a key is visible ASCII,
    /// so it holds no newline and no unscoped key can equal a scoped one); the key alone when
    /// unscoped.
    pub fn scoped_text(&self) -> String {
        match &self.owner {
            Some(owner) => format!("{}\n{}", owner.as_str(), self.key.as_str()),
            None => self.key.as_str().to_owned(),
        }
    }

    /// The id of the order this claim creates: `ord_` and 32 hex digits of SHA-256 of the
    /// claim, the same for every attempt. It is decided before anything is written and is also
    /// the coupon redemption id, so a retry after a crash tries the coupon under the same id (the
    /// coupon context replays the hold instead of taking a second one).
    pub fn order_id(&self) -> String {
        let digest = sha256_hex(&format!("order\n{}", self.scoped_text()));
        format!("ord_{}", &digest[..32])
    }

    /// The stock reservation id of `attempt`, unique per (owner, key, attempt): a user id holds
    /// no newline, so the hashed text of two different triples always differs.
    pub fn reservation_id(&self, attempt: i64) -> String {
        let Some(owner) = &self.owner else {
            return self.key.reservation_id(attempt);
        };
        let text = format!(
            "reservation\n{attempt}\n{}\n{}",
            owner.as_str(),
            self.key.as_str()
        );
        format!("rsv-{}", &sha256_hex(&text)[..40])
    }
}

fn sha256_hex(s: &str) -> String {
    let digest = Sha256::digest(s.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The fingerprint of an order request: SHA-256 (hex) of a canonical text of its parsed content.
/// Item order is kept: it is the order of the lines the client will see.
pub fn fingerprint(order: &NewOrder) -> String {
    let mut canon = String::from("order-request-v1\n");
    canon.push_str(&format!("user_id={}\n", order.user_id.as_str()));
    for item in &order.items {
        canon.push_str(&format!("item={}*{}\n", item.sku, item.quantity.get()));
    }
    match &order.coupon_code {
        Some(c) => canon.push_str(&format!("coupon={}\n", c.as_str())),
        None => canon.push_str("coupon=\n"),
    }
    sha256_hex(&canon)
}

/// The state of a stored claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimState {
    /// A request is working on it (or crashed while doing so).
    InProgress,
    /// Finished: the stored response is the answer for this key from now on.
    Completed,
    /// The attempt failed after its reservation was released (or handed to the compensator);
    /// the same request may try again with the next attempt number.
    Failed,
}

impl ClaimState {
    pub fn as_str(&self) -> &'static str {
        match self {
            ClaimState::InProgress => "in-progress",
            ClaimState::Completed => "completed",
            ClaimState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            ClaimState::InProgress,
            ClaimState::Completed,
            ClaimState::Failed,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }
}

/// What is stored for a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredClaim {
    pub fingerprint: String,
    pub state: ClaimState,
    pub attempt: i64,
    /// When the current holder claimed it, in milliseconds since the Unix epoch.
    pub claimed_at_ms: i64,
}

/// What a request with a key does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// No claim yet: insert one (attempt 0) and proceed.
    ClaimNew,
    /// The same request finished before: answer with the stored response.
    Replay,
    /// The key was used for a different request: 422.
    KeyReused,
    /// The same request is running right now: 409, retry later.
    InProgress,
    /// The same request was claimed so long ago that its holder must have died: take the claim
    /// over with the *same* attempt (and so the same reservation id) and proceed.
    Retake { attempt: i64 },
    /// The same request failed cleanly before: claim it again with this (new) attempt.
    Retry { attempt: i64 },
}

/// Decides what to do with `stored` for a request of `fingerprint` at `now_ms`, where a claim
/// older than `lease_ms` is considered abandoned.
pub fn decide(
    stored: Option<&StoredClaim>,
    fingerprint: &str,
    now_ms: i64,
    lease_ms: i64,
) -> Decision {
    let Some(claim) = stored else {
        return Decision::ClaimNew;
    };
    if claim.fingerprint != fingerprint {
        return Decision::KeyReused;
    }
    match claim.state {
        ClaimState::Completed => Decision::Replay,
        ClaimState::Failed => Decision::Retry {
            attempt: claim.attempt,
        },
        ClaimState::InProgress if now_ms.saturating_sub(claim.claimed_at_ms) >= lease_ms => {
            Decision::Retake {
                attempt: claim.attempt,
            }
        }
        ClaimState::InProgress => Decision::InProgress,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::new_order::RawItem;

    fn order(user: &str, items: &[(&str, i64)], coupon: Option<&str>) -> NewOrder {
        let raw: Vec<RawItem> = items
            .iter()
            .map(|(sku, quantity)| RawItem {
                sku,
                quantity: *quantity,
            })
            .collect();
        NewOrder::parse(user, &raw, coupon).unwrap()
    }

    #[test]
    fn keys_are_visible_ascii_up_to_255() {
        assert!(IdempotencyKey::parse("a").is_ok());
        assert!(IdempotencyKey::parse(&"k".repeat(255)).is_ok());
        assert_eq!(IdempotencyKey::parse(""), Err(KeyError::Empty));
        assert_eq!(IdempotencyKey::parse("   "), Err(KeyError::Empty));
        assert_eq!(
            IdempotencyKey::parse(&"k".repeat(256)),
            Err(KeyError::TooLong)
        );
        assert_eq!(IdempotencyKey::parse("a\tb"), Err(KeyError::BadChar));
        assert_eq!(IdempotencyKey::parse("é"), Err(KeyError::BadChar));
    }

    #[test]
    fn reservation_ids_are_deterministic_per_key_and_attempt() {
        let k = IdempotencyKey::parse("key 1/../ :*").unwrap();
        assert_eq!(k.reservation_id(0), k.reservation_id(0));
        assert_ne!(k.reservation_id(0), k.reservation_id(1));
        let other = IdempotencyKey::parse("key 2").unwrap();
        assert_ne!(k.reservation_id(0), other.reservation_id(0));
        let id = k.reservation_id(0);
        assert_eq!(id.len(), 44);
        assert!(id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }

    #[test]
    fn order_ids_are_stable_per_claim_and_differ_between_owners() {
        let key = IdempotencyKey::parse("k 1").unwrap();
        let alice = ClaimKey::new(UserId::parse("alice").unwrap(), key.clone());
        let bob = ClaimKey::new(UserId::parse("bob").unwrap(), key.clone());
        assert_eq!(alice.order_id(), alice.clone().order_id());
        assert_ne!(alice.order_id(), bob.order_id());
        assert_ne!(alice.order_id(), ClaimKey::unscoped(key).order_id());
        let id = alice.order_id();
        assert_eq!(id.len(), 36);
        assert!(id[4..]
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert!(crate::coupon::RedemptionId::parse(&id).is_ok());
    }

    #[test]
    fn claim_keys_are_scoped_to_their_owner() {
        let key = IdempotencyKey::parse("first-order").unwrap();
        let alice = ClaimKey::new(UserId::parse("alice").unwrap(), key.clone());
        let bob = ClaimKey::new(UserId::parse("bob").unwrap(), key.clone());
        assert_ne!(alice.reservation_id(0), bob.reservation_id(0));
        assert_ne!(alice.reservation_id(0), alice.reservation_id(1));
        assert_eq!(alice.reservation_id(0), alice.clone().reservation_id(0));
        // Stored before scoping: the ids the claim was made with.
        let legacy = ClaimKey::unscoped(key.clone());
        assert_eq!(legacy.reservation_id(3), key.reservation_id(3));
        assert_ne!(legacy.reservation_id(0), alice.reservation_id(0));
        assert_ne!(alice.scoped_text(), bob.scoped_text());
        assert_eq!(legacy.scoped_text(), "first-order");
        for k in [alice, bob, legacy] {
            assert_eq!(
                ClaimKey::from_stored(k.owner_str(), k.key().as_str()),
                Some(k)
            );
        }
    }

    #[test]
    fn fingerprint_follows_content() {
        let a = order("u", &[("A", 1), ("B", 2)], None);
        assert_eq!(fingerprint(&a), fingerprint(&a.clone()));
        for other in [
            order("v", &[("A", 1), ("B", 2)], None),
            order("u", &[("A", 1), ("B", 3)], None),
            order("u", &[("B", 2), ("A", 1)], None),
            order("u", &[("A", 1), ("B", 2)], Some("X")),
        ] {
            assert_ne!(fingerprint(&a), fingerprint(&other));
        }
    }

    proptest::proptest! {
        /// Whatever the key, the derived id is one the stock component accepts.
        #[test]
        fn reservation_ids_are_valid_stock_ids(key in "[ -~]{1,255}", attempt in 0i64..1000) {
            if let Ok(k) = IdempotencyKey::parse(&key) {
                let id = k.reservation_id(attempt);
                proptest::prop_assert!(crate::reservation::ReservationId::parse(&id).is_ok(), "{}", id);
            }
        }

        #[test]
        fn key_parse_never_panics(s in "\\PC{0,300}") {
            let _ = IdempotencyKey::parse(&s);
        }
    }

    #[test]
    fn decisions() {
        let claim = |state, claimed_at_ms| StoredClaim {
            fingerprint: "f".into(),
            state,
            attempt: 2,
            claimed_at_ms,
        };
        use ClaimState::*;
        assert_eq!(decide(None, "f", 0, 10), Decision::ClaimNew);
        assert_eq!(
            decide(Some(&claim(Completed, 0)), "g", 0, 10),
            Decision::KeyReused
        );
        assert_eq!(
            decide(Some(&claim(InProgress, 0)), "g", 99, 10),
            Decision::KeyReused
        );
        assert_eq!(
            decide(Some(&claim(Completed, 0)), "f", 99, 10),
            Decision::Replay
        );
        assert_eq!(
            decide(Some(&claim(InProgress, 95)), "f", 99, 10),
            Decision::InProgress
        );
        assert_eq!(
            decide(Some(&claim(InProgress, 89)), "f", 99, 10),
            Decision::Retake { attempt: 2 }
        );
        assert_eq!(
            decide(Some(&claim(Failed, 98)), "f", 99, 10),
            Decision::Retry { attempt: 2 }
        );
    }
}

//! Verified customer tokens remembered in Redis, so that a customer's next requests skip the
//! signature check (~0.9 ms per request in wasm, docs/benchmarks.md).
//!
//! An entry is `auth:verified:<sha256>` (see `AuthConfig::cache_key`) -> `<mac> <exp> <sub>`:
//! who the token names and its `exp`, sealed with HMAC-SHA256 under a key derived from the
//! required secret `internal_token`, over the entry's own name too. Whoever can write to Redis
//! but does not hold that secret cannot make up a verdict, move one to another token's name or
//! change whom it names: such an entry is ignored (the token is verified in full, as on a miss),
//! logged and counted in `auth:forged-verdicts` for the operator. An entry is also ignored once
//! its token has expired (`exp` + leeway), whatever Redis's TTL says.
//!
//! Remembering never decides alone: without Redis, or with Redis failing, every request verifies.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use shop_domain::new_order::UserId;
use spin_sdk::redis::{Connection, RedisParameter};

use super::{Customer, LEEWAY_SECONDS};

type HmacSha256 = Hmac<Sha256>;

/// Where forged entries are counted (outside `auth:verified:*`, which holds only verdicts).
pub const FORGED_COUNTER: &str = "auth:forged-verdicts";
/// Entries live at most this long, even for a token valid for longer.
const MAX_TTL_SECONDS: u64 = 3600;
/// Separates this key from every other use of the secret it is derived from.
const KEY_LABEL: &[u8] = b"spin-shop auth verdict cache v1";

/// The sealing key: HMAC-SHA256 of [`KEY_LABEL`] under the app's secret.
pub struct SealKey([u8; 32]);

impl SealKey {
    /// The key derived from `secret`; none from an empty secret (anyone could compute it).
    pub fn derive(secret: &str) -> Option<SealKey> {
        if secret.is_empty() {
            return None;
        }
        let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).ok()?;
        mac.update(KEY_LABEL);
        let mut key = [0u8; 32];
        key.copy_from_slice(&mac.finalize().into_bytes());
        Some(SealKey(key))
    }

    /// The MAC of a verdict under its entry `name` (each part length-prefixed).
    fn mac(&self, name: &str, exp: u64, sub: &str) -> Option<HmacSha256> {
        let mut mac = HmacSha256::new_from_slice(&self.0).ok()?;
        let exp = exp.to_be_bytes();
        let parts: [&[u8]; 3] = [name.as_bytes(), &exp, sub.as_bytes()];
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        Some(mac)
    }

    /// The entry value for `customer`, whose token expires at `exp`, under `name`.
    pub fn seal(&self, name: &str, customer: &Customer, exp: u64) -> Option<String> {
        let tag = self
            .mac(name, exp, customer.as_str())?
            .finalize()
            .into_bytes();
        let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        Some(format!("{hex} {exp} {}", customer.as_str()))
    }

    /// What the entry `value` under `name` says at `now` (Unix seconds).
    pub fn unseal(&self, name: &str, value: &[u8], now: u64) -> Recall {
        let Some((tag, exp, sub)) = parts(value) else {
            return Recall::Forged;
        };
        let genuine = self
            .mac(name, exp, sub)
            .is_some_and(|mac| mac.verify_slice(&tag).is_ok());
        match (genuine, UserId::parse(sub)) {
            (false, _) | (true, Err(_)) => Recall::Forged,
            (true, Ok(_)) if now > exp.saturating_add(LEEWAY_SECONDS) => Recall::Expired,
            (true, Ok(id)) => Recall::Valid(Customer(id)),
        }
    }
}

/// `<hex tag> <exp> <sub>`, if the value has that shape.
fn parts(value: &[u8]) -> Option<(Vec<u8>, u64, &str)> {
    let text = std::str::from_utf8(value).ok()?;
    let mut fields = text.splitn(3, ' ');
    let (hex, exp, sub) = (fields.next()?, fields.next()?, fields.next()?);
    let tag = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    Some((tag, exp.parse().ok()?, sub))
}

/// What a remembered entry is worth.
#[derive(Debug, PartialEq, Eq)]
pub enum Recall {
    /// Sealed by us, for a token still valid: the customer it names.
    Valid(Customer),
    /// Sealed by us, but its token has expired since.
    Expired,
    /// Not sealed by us (or not for this name): someone else wrote it.
    Forged,
}

/// The verdict cache of one request: a Redis connection and the sealing key.
pub struct Verdicts {
    redis: std::rc::Rc<Connection>,
    key: SealKey,
}

impl Verdicts {
    /// The cache, if Redis and the secret are at hand; none otherwise (every request verifies).
    pub fn open() -> Option<Verdicts> {
        let secret = crate::vars::get("internal_token").ok()?;
        let key = SealKey::derive(&secret)?;
        let url = crate::vars::get("redis_url").ok()?;
        let redis = crate::redis::connect(&url).ok()?;
        Some(Verdicts { redis, key })
    }

    /// The customer a genuine, unexpired entry `name` names. A forged entry is reported.
    pub fn recall(&self, name: &str, now: u64) -> Option<Customer> {
        let value = self.redis.get(name).ok()??;
        match self.key.unseal(name, &value, now) {
            Recall::Valid(customer) => Some(customer),
            Recall::Expired => None,
            Recall::Forged => {
                eprintln!("identity: ignored a forged token-cache entry {name}");
                let _ = self.redis.incr(FORGED_COUNTER);
                None
            }
        }
    }

    /// Remembers that the token of entry `name` names `customer` until `exp` (+ leeway).
    pub fn remember(&self, name: &str, customer: &Customer, exp: u64, now: u64) {
        let ttl = (exp + LEEWAY_SECONDS)
            .saturating_sub(now)
            .min(MAX_TTL_SECONDS);
        let Some(value) = self.key.seal(name, customer, exp).filter(|_| ttl > 0) else {
            return;
        };
        let params = [name, value.as_str(), "EX", &ttl.to_string()]
            .map(|p| RedisParameter::Binary(p.as_bytes().to_vec()));
        let _ = self.redis.execute("SET", &params);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: &str = "auth:verified:abc";

    fn alice() -> Customer {
        Customer(UserId::parse("alice").unwrap())
    }

    fn key() -> SealKey {
        SealKey::derive("the app's secret").unwrap()
    }

    #[test]
    fn a_sealed_verdict_is_recalled_until_its_token_expires() {
        let sealed = key().seal(NAME, &alice(), 1_000).unwrap();
        let recall = |now| key().unseal(NAME, sealed.as_bytes(), now);
        assert_eq!(recall(900), Recall::Valid(alice()));
        assert_eq!(recall(1_000 + LEEWAY_SECONDS), Recall::Valid(alice()));
        assert_eq!(recall(1_001 + LEEWAY_SECONDS), Recall::Expired);
    }

    #[test]
    fn anything_not_sealed_by_this_key_for_this_name_is_forged() {
        let sealed = key().seal(NAME, &alice(), 1_000).unwrap();
        let k = key();
        assert_eq!(k.unseal(NAME, b"bob", 0), Recall::Forged, "the old format");
        assert_eq!(
            k.unseal("auth:verified:other", sealed.as_bytes(), 0),
            Recall::Forged
        );
        let other = SealKey::derive("another secret").unwrap();
        assert_eq!(other.unseal(NAME, sealed.as_bytes(), 0), Recall::Forged);
        let renamed = sealed.replace(" alice", " bob");
        assert_eq!(k.unseal(NAME, renamed.as_bytes(), 0), Recall::Forged);
        let extended = sealed.replace(" 1000 ", " 9999999999 ");
        assert_eq!(k.unseal(NAME, extended.as_bytes(), 0), Recall::Forged);
        let truncated = &sealed[2..];
        assert_eq!(k.unseal(NAME, truncated.as_bytes(), 0), Recall::Forged);
    }

    #[test]
    fn an_empty_secret_gives_no_key() {
        assert!(SealKey::derive("").is_none());
    }
}

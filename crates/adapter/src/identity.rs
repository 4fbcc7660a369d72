//! Who is calling: a customer is who their `Authorization: Bearer <JWT>` says (`sub`), the admin
//! is whoever presents the admin token. Tokens are RS256 or ES256, verified against the JWKS in
//! the `auth_jwks` variable with `iss` = `auth_issuer`, `aud` = `auth_audience`, and `exp` /
//! `nbf` checked with 60 s of leeway for clock skew between the issuer and us.
//!
//! Every other algorithm is refused before a key is even looked up: `none` (no signature) and
//! HS* (a verifier that accepted HS256 would take the public key, which everyone has, as the
//! HMAC secret). The accepted algorithm comes from our key table, never from the token alone:
//! a token's `alg` must match the algorithm of the key its `kid` selects.
//!
//! [`Verifier`] and [`TokenError`] are plain Rust (unit-tested natively); [`customer`] and
//! [`caller`] read the variables through spin-sdk and map every refusal to a problem once.

// `Problem` is the one error a request ends with, built at most once per request: boxing it
// would only add noise at every call site.
#![allow(clippy::result_large_err)]

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::PublicKeyUse;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use shop_domain::new_order::UserId;
use spin_sdk::http::Request;

use crate::auth::{bearer_token, constant_time_eq};
use crate::Problem;

mod verdicts;

/// Seconds of clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECONDS: u64 = 60;

/// A caller of a customer route whose token was verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer(UserId);

impl Customer {
    pub fn id(&self) -> &UserId {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// Whether `user_id` (an order's owner) is this customer.
    pub fn owns(&self, user_id: &str) -> bool {
        self.0.as_str() == user_id
    }
}

/// Who may read orders: the admin reads anyone's, a customer only their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Admin,
    Customer(Customer),
}

impl Caller {
    /// Whether this caller may see an order of `user_id`.
    pub fn may_read(&self, user_id: &str) -> bool {
        match self {
            Caller::Admin => true,
            Caller::Customer(c) => c.owns(user_id),
        }
    }
}

/// Why a token was refused. All of them are the client's problem (401), never ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    Missing,
    Malformed,
    AlgorithmRefused(String),
    UnknownKey,
    BadSignature,
    Expired,
    NotYetValid,
    WrongIssuer,
    WrongAudience,
    BadClaims(String),
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenError::Missing => write!(f, "this route needs `Authorization: Bearer <token>`"),
            TokenError::Malformed => write!(f, "the bearer token is not a well-formed JWT"),
            TokenError::AlgorithmRefused(alg) => {
                write!(
                    f,
                    "tokens signed with {alg} are refused (RS256 or ES256 only)"
                )
            }
            TokenError::UnknownKey => write!(f, "the token's key (kid) is not in the JWKS"),
            TokenError::BadSignature => write!(f, "the token's signature does not verify"),
            TokenError::Expired => write!(f, "the token has expired"),
            TokenError::NotYetValid => write!(f, "the token is not valid yet (nbf)"),
            TokenError::WrongIssuer => write!(f, "the token was issued by another issuer"),
            TokenError::WrongAudience => write!(f, "the token is meant for another audience"),
            TokenError::BadClaims(why) => write!(f, "the token's claims are unusable: {why}"),
        }
    }
}

impl From<TokenError> for Problem {
    /// 401 with the RFC 6750 challenge: no error code when no token was sent, `invalid_token`
    /// when one was and it is refused.
    fn from(e: TokenError) -> Problem {
        let challenge = match &e {
            TokenError::Missing => r#"Bearer realm="spin-shop""#.to_owned(),
            other => format!(
                r#"Bearer realm="spin-shop", error="invalid_token", error_description="{}""#,
                other.to_string().replace(['"', '\\', '`'], "'")
            ),
        };
        Problem::new(401, "unauthorized", "Unauthorized", e.to_string())
            .with_header("www-authenticate", challenge)
    }
}

/// The JWKS would not give us one usable key: our configuration is wrong, not the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

struct Key {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

/// The verification keys of a JWKS with the issuer and audience tokens must name.
pub struct Verifier {
    keys: Vec<Key>,
    issuer: String,
    audience: String,
}

/// Optional so that a token without `sub` is reported by the validation (a missing claim), not
/// as a malformed token.
#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    exp: Option<u64>,
}

impl Verifier {
    /// Keeps the JWKS's RS256 and ES256 (P-256) signing keys; `oct` (HMAC) keys and every other
    /// kind are ignored, so no secret-key algorithm can ever be selected.
    pub fn new(jwks_json: &str, issuer: &str, audience: &str) -> Result<Verifier, ConfigError> {
        let set: JwkSet = serde_json::from_str(jwks_json)
            .map_err(|e| ConfigError(format!("auth_jwks is not a JWKS: {e}")))?;
        let keys: Vec<Key> = set.keys.iter().filter_map(usable_key).collect();
        if keys.is_empty() {
            return Err(ConfigError(
                "auth_jwks has no RS256 or ES256 signing key".into(),
            ));
        }
        if issuer.is_empty() || audience.is_empty() {
            return Err(ConfigError(
                "auth_issuer and auth_audience must be set".into(),
            ));
        }
        Ok(Verifier {
            keys,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        })
    }

    /// The customer a token names, if it verifies.
    pub fn verify(&self, token: &str) -> Result<Customer, TokenError> {
        self.verify_until(token).map(|(customer, _)| customer)
    }

    /// As [`Verifier::verify`], with the token's `exp` (Unix seconds).
    pub fn verify_until(&self, token: &str) -> Result<(Customer, u64), TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(TokenError::AlgorithmRefused(format!("{:?}", header.alg)));
        }
        let key = self.select(header.kid.as_deref(), header.alg)?;
        let mut validation = Validation::new(key.alg);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &key.key, &validation)
            .map_err(|e| token_error(e.kind()))?;
        let sub = data.claims.sub.unwrap_or_default();
        let customer = UserId::parse(&sub)
            .map(Customer)
            .map_err(|e| TokenError::BadClaims(format!("sub: {e}")))?;
        Ok((customer, data.claims.exp.unwrap_or_default()))
    }

    /// The key `kid` names, of the token's algorithm. Without a `kid` only a JWKS with a single
    /// key of that algorithm is unambiguous; trying every key would let a rotation-era token
    /// verify against a key it was never meant for.
    fn select(&self, kid: Option<&str>, alg: Algorithm) -> Result<&Key, TokenError> {
        let mut candidates = self
            .keys
            .iter()
            .filter(|k| k.alg == alg && (kid.is_none() || k.kid.as_deref() == kid));
        match (candidates.next(), candidates.next(), kid) {
            (Some(k), None, _) | (Some(k), Some(_), Some(_)) => Ok(k),
            _ => Err(TokenError::UnknownKey),
        }
    }
}

/// The verification key of one JWK, if it is a signing key we accept.
fn usable_key(jwk: &Jwk) -> Option<Key> {
    if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
        return None;
    }
    let alg = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        _ => return None,
    };
    let declared_ok = match jwk.common.key_algorithm {
        None => true,
        Some(KeyAlgorithm::RS256) => alg == Algorithm::RS256,
        Some(KeyAlgorithm::ES256) => alg == Algorithm::ES256,
        Some(_) => false,
    };
    let key = DecodingKey::from_jwk(jwk).ok().filter(|_| declared_ok)?;
    Some(Key {
        kid: jwk.common.key_id.clone(),
        alg,
        key,
    })
}

fn token_error(kind: &ErrorKind) -> TokenError {
    match kind {
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
        ErrorKind::InvalidAudience => TokenError::WrongAudience,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            TokenError::AlgorithmRefused("an algorithm other than the key's".into())
        }
        ErrorKind::MissingRequiredClaim(c) => TokenError::BadClaims(format!("{c} is missing")),
        ErrorKind::InvalidClaimFormat(c) => TokenError::BadClaims(format!("{c} is malformed")),
        _ => TokenError::Malformed,
    }
}

/// The customer whose token the request carries (customer routes: creating and cancelling).
/// These routes use Redis anyway (the Idempotency-Key lease, the fast-path publish), so their
/// check goes through the verdict cache ([`verdicts`]).
pub fn customer(req: &Request) -> Result<Customer, Problem> {
    let token = presented(req).ok_or(TokenError::Missing)?;
    verify_remembered(token)
}

/// The admin (admin token) or a customer (JWT): routes that read orders.
///
/// Reads need no Redis, and a customer's token is verified in full here, without the verdict
/// cache: a Redis that accepts connections and never answers would otherwise hold every read
/// under Spin, whose outbound Redis connects without a timeout (docs/architecture.md).
pub fn caller(req: &Request) -> Result<Caller, Problem> {
    let token = presented(req).ok_or(TokenError::Missing)?;
    if is_admin(token)? {
        return Ok(Caller::Admin);
    }
    let config = AuthConfig::read()?;
    Ok(Caller::Customer(config.verifier()?.verify(token)?))
}

/// Who calls a public route that also tells a signed-in customer about themselves (a flash
/// sale's page): `None` without a bearer token, the admin, or the customer, whose token is
/// checked through the verdict cache (such routes use Redis anyway). A token that does not
/// verify is a 401, never taken for no token.
pub fn visitor(req: &Request) -> Result<Option<Caller>, Problem> {
    let Some(token) = presented(req) else {
        return Ok(None);
    };
    if is_admin(token)? {
        return Ok(Some(Caller::Admin));
    }
    Ok(Some(Caller::Customer(verify_remembered(token)?)))
}

fn is_admin(token: &str) -> Result<bool, Problem> {
    let admin = crate::vars::get("admin_token")
        .map_err(|e| Problem::internal("read variable admin_token", e))?;
    // An empty admin token never means "anyone is admin".
    Ok(!admin.is_empty() && constant_time_eq(token, &admin))
}

/// Verifies `token`, remembering the verdict so that the customer's next requests skip the
/// work. The entry's name is keyed by SHA-256 over the JWKS, issuer, audience and token, so
/// rotating or removing a key or changing either claim misses it; its value is sealed with a key
/// only the app holds and carries the token's `exp` ([`verdicts`]). Only a token that verified
/// is remembered. Without Redis (no `redis_url`, or down) every request verifies: the cache
/// saves time, it never decides alone.
fn verify_remembered(token: &str) -> Result<Customer, Problem> {
    let config = AuthConfig::read()?;
    let name = config.cache_key(token);
    let now = crate::ids::now_ms() as u64 / 1000;
    let cache = verdicts::Verdicts::open();
    if let Some(customer) = cache.as_ref().and_then(|c| c.recall(&name, now)) {
        return Ok(customer);
    }
    let (customer, exp) = config.verifier()?.verify_until(token)?;
    if let Some(c) = &cache {
        c.remember(&name, &customer, exp, now);
    }
    Ok(customer)
}

/// The verification settings, from the variables.
struct AuthConfig {
    jwks: String,
    issuer: String,
    audience: String,
}

impl AuthConfig {
    fn read() -> Result<AuthConfig, Problem> {
        let var = |name: &str| {
            crate::vars::get(name)
                .map_err(|e| Problem::internal(&format!("read variable {name}"), e))
        };
        Ok(AuthConfig {
            jwks: var("auth_jwks")?,
            issuer: var("auth_issuer")?,
            audience: var("auth_audience")?,
        })
    }

    /// The verifier these settings describe.
    fn verifier(&self) -> Result<Verifier, Problem> {
        Verifier::new(&self.jwks, &self.issuer, &self.audience)
            .map_err(|e| Problem::internal("auth_jwks", e.0))
    }

    /// `auth:verified:` + hex SHA-256 of the settings and the token (length-prefixed, so no two
    /// different tuples hash the same input).
    fn cache_key(&self, token: &str) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for part in [&self.jwks, &self.issuer, &self.audience, token] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        format!("auth:verified:{hex}")
    }
}

fn presented(req: &Request) -> Option<&str> {
    req.header("authorization")
        .and_then(|v| v.as_str())
        .and_then(bearer_token)
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use devtools::{claims, hs256_token, jwks, unix_now, unsigned_token, DevKey};
    use serde_json::Value;

    use super::*;

    const ISS: &str = "https://id.example";
    const AUD: &str = "spin-shop";

    /// Key generation (RSA above all) is slow: one set per test binary.
    fn keys() -> &'static (DevKey, DevKey, DevKey) {
        static KEYS: OnceLock<(DevKey, DevKey, DevKey)> = OnceLock::new();
        KEYS.get_or_init(|| {
            (
                DevKey::generate_es256(Some("ec-1")).unwrap(),
                DevKey::generate_rs256(Some("rsa-1")).unwrap(),
                // Same kid as the EC key, but not in the JWKS: a forger's key.
                DevKey::generate_es256(Some("ec-1")).unwrap(),
            )
        })
    }

    fn verifier() -> Verifier {
        let (ec, rsa, _) = keys();
        Verifier::new(&jwks(&[ec, rsa]), ISS, AUD).unwrap()
    }

    fn good(sub: &str) -> Value {
        claims(ISS, AUD, sub, 600)
    }

    fn with(mut c: Value, key: &str, value: Value) -> Value {
        c[key] = value;
        c
    }

    #[test]
    fn accepts_es256_and_rs256_tokens_and_names_the_subject() {
        let (ec, rsa, _) = keys();
        let v = verifier();
        assert_eq!(
            v.verify(&ec.sign(&good("u1")).unwrap()).unwrap().as_str(),
            "u1"
        );
        assert_eq!(
            v.verify(&rsa.sign(&good("u2")).unwrap()).unwrap().as_str(),
            "u2"
        );
    }

    #[test]
    fn refuses_a_key_outside_the_jwks_even_under_a_known_kid() {
        let (_, _, forger) = keys();
        let token = forger.sign(&good("u1")).unwrap();
        assert_eq!(verifier().verify(&token), Err(TokenError::BadSignature));
        let other = DevKey::generate_es256(Some("ec-unknown")).unwrap();
        let token = other.sign(&good("u1")).unwrap();
        assert_eq!(verifier().verify(&token), Err(TokenError::UnknownKey));
    }

    #[test]
    fn checks_time_with_a_minute_of_leeway() {
        let (ec, _, _) = keys();
        let v = verifier();
        let now = unix_now();
        let exp = |t: i64| ec.sign(&with(good("u1"), "exp", t.into())).unwrap();
        assert!(v.verify(&exp(now - 30)).is_ok(), "within leeway");
        assert_eq!(v.verify(&exp(now - 120)), Err(TokenError::Expired));
        let nbf = |t: i64| ec.sign(&with(good("u1"), "nbf", t.into())).unwrap();
        assert!(v.verify(&nbf(now + 30)).is_ok(), "within leeway");
        assert_eq!(v.verify(&nbf(now + 120)), Err(TokenError::NotYetValid));
    }

    #[test]
    fn checks_issuer_audience_and_required_claims() {
        let (ec, _, _) = keys();
        let v = verifier();
        let sign = |c: Value| ec.sign(&c).unwrap();
        assert_eq!(
            v.verify(&sign(with(good("u1"), "iss", "evil".into()))),
            Err(TokenError::WrongIssuer)
        );
        assert_eq!(
            v.verify(&sign(with(good("u1"), "aud", "other".into()))),
            Err(TokenError::WrongAudience)
        );
        let mut no_sub = good("u1");
        no_sub.as_object_mut().unwrap().remove("sub");
        assert!(matches!(
            v.verify(&sign(no_sub)),
            Err(TokenError::BadClaims(_))
        ));
        let mut no_exp = good("u1");
        no_exp.as_object_mut().unwrap().remove("exp");
        assert!(matches!(
            v.verify(&sign(no_exp)),
            Err(TokenError::BadClaims(_))
        ));
        assert!(matches!(
            v.verify(&sign(good("u 1"))),
            Err(TokenError::BadClaims(_))
        ));
    }

    #[test]
    fn refuses_alg_none_and_hs256_with_the_public_key_as_secret() {
        let (ec, rsa, _) = keys();
        let v = verifier();
        assert!(v.verify(&unsigned_token(&good("u1"))).is_err());
        for key in [ec, rsa] {
            let forged =
                hs256_token(key.public_pem().as_bytes(), Some(key.kid()), &good("u1")).unwrap();
            assert!(
                matches!(v.verify(&forged), Err(TokenError::AlgorithmRefused(_))),
                "{}",
                key.kid()
            );
        }
        assert_eq!(v.verify("not-a-jwt"), Err(TokenError::Malformed));
    }

    #[test]
    fn without_kid_only_a_single_key_of_the_algorithm_is_chosen() {
        let (ec, rsa, _) = keys();
        let one =
            DevKey::from_pem(jsonwebtoken::Algorithm::ES256, ec.private_pem(), Some("x")).unwrap();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = None;
        let key = jsonwebtoken::EncodingKey::from_ec_pem(ec.private_pem().as_bytes()).unwrap();
        let token = jsonwebtoken::encode(&header, &good("u1"), &key).unwrap();
        assert!(verifier().verify(&token).is_ok(), "one EC key in the set");
        let two_ec = Verifier::new(&jwks(&[ec, rsa, &one]), ISS, AUD).unwrap();
        assert_eq!(two_ec.verify(&token), Err(TokenError::UnknownKey));
    }

    #[test]
    fn a_jwks_without_signing_keys_is_a_configuration_error() {
        let oct = r#"{"keys":[{"kty":"oct","k":"c2VjcmV0","alg":"HS256"}]}"#;
        assert!(Verifier::new(oct, ISS, AUD).is_err());
        assert!(Verifier::new("{}", ISS, AUD).is_err());
        assert!(Verifier::new("nope", ISS, AUD).is_err());
    }

    #[test]
    fn refusals_are_401_with_a_bearer_challenge() {
        let p = Problem::from(TokenError::Missing);
        assert_eq!(p.status, 401);
        assert_eq!(
            p.headers,
            vec![(
                "www-authenticate".to_owned(),
                r#"Bearer realm="spin-shop""#.to_owned()
            )]
        );
        let p = Problem::from(TokenError::Expired);
        assert!(
            p.headers[0].1.contains(r#"error="invalid_token""#),
            "{:?}",
            p.headers
        );
    }

    #[test]
    fn callers_read_only_what_they_may() {
        let c = Caller::Customer(Customer(UserId::parse("u1").unwrap()));
        assert!(c.may_read("u1"));
        assert!(!c.may_read("u2"));
        assert!(Caller::Admin.may_read("u2"));
    }
}

//! Development and test signing keys for customer JWTs. Never used by the components: they only
//! verify, against the JWKS this crate prints. The private keys are generated here (or read from
//! a PKCS#8 PEM file) so that local runs and the e2e suite need no identity provider.
//!
//! [`shards`]: the order context's shard files (layout check, reshard), natively.

pub mod shards;

use anyhow::{anyhow, Context, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::elliptic_curve::Generate;
use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use serde_json::{json, Value};

/// The issuer and audience the app expects unless `auth_issuer` / `auth_audience` say otherwise.
pub const DEFAULT_ISSUER: &str = "spin-shop-dev";
pub const DEFAULT_AUDIENCE: &str = "spin-shop";

/// A private signing key with its public JWK (`kid`, `alg`, `use: sig` set).
pub struct DevKey {
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Jwk,
    private_pem: String,
    public_pem: String,
}

impl DevKey {
    /// A fresh P-256 key for ES256.
    pub fn generate_es256(kid: Option<&str>) -> Result<DevKey> {
        let secret = p256::SecretKey::try_generate_from_rng(&mut getrandom::SysRng)
            .map_err(|e| anyhow!("system randomness: {e}"))?;
        let pem = secret
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| anyhow!("encode P-256 key: {e}"))?;
        Self::from_pem(Algorithm::ES256, &pem, kid)
    }

    /// A fresh 2048-bit RSA key for RS256.
    pub fn generate_rs256(kid: Option<&str>) -> Result<DevKey> {
        let key = rsa::PrivateKey::new(&mut getrandom::SysRng, 2048)
            .map_err(|e| anyhow!("generate RSA key: {e}"))?;
        let pem = rsa::pkcs8::EncodePrivateKey::to_pkcs8_pem(&key, LineEnding::LF)
            .map_err(|e| anyhow!("encode RSA key: {e}"))?;
        Self::from_pem(Algorithm::RS256, &pem, kid)
    }

    /// A PKCS#8 PEM private key of either kind: a P-256 key signs ES256, an RSA key RS256.
    pub fn from_any_pem(pem: &str, kid: Option<&str>) -> Result<DevKey> {
        let is_p256 =
            <p256::SecretKey as p256::pkcs8::DecodePrivateKey>::from_pkcs8_pem(pem).is_ok();
        let alg = if is_p256 {
            Algorithm::ES256
        } else {
            Algorithm::RS256
        };
        Self::from_pem(alg, pem, kid)
            .context("the key is neither a P-256 (ES256) nor an RSA (RS256) PKCS#8 key")
    }

    /// The algorithm the key signs with.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// A PKCS#8 PEM private key for `alg` (ES256 or RS256). Without `kid`, the key id is the
    /// key's RFC 7638 thumbprint, so the same file always gets the same id.
    pub fn from_pem(alg: Algorithm, pem: &str, kid: Option<&str>) -> Result<DevKey> {
        let (encoding, public_pem) = match alg {
            Algorithm::ES256 => {
                let secret: p256::SecretKey = p256::pkcs8::DecodePrivateKey::from_pkcs8_pem(pem)
                    .map_err(|e| anyhow!("read P-256 key: {e}"))?;
                let public = secret
                    .public_key()
                    .to_public_key_pem(LineEnding::LF)
                    .map_err(|e| anyhow!("encode public key: {e}"))?;
                (EncodingKey::from_ec_pem(pem.as_bytes())?, public)
            }
            Algorithm::RS256 => {
                let key: rsa::PrivateKey = rsa::pkcs8::DecodePrivateKey::from_pkcs8_pem(pem)
                    .map_err(|e| anyhow!("read RSA key: {e}"))?;
                let public = rsa::pkcs8::EncodePublicKey::to_public_key_pem(
                    &key.to_public_key(),
                    LineEnding::LF,
                )
                .map_err(|e| anyhow!("encode public key: {e}"))?;
                (EncodingKey::from_rsa_pem(pem.as_bytes())?, public)
            }
            other => return Err(anyhow!("{other:?} is not a development key algorithm")),
        };
        let mut jwk = Jwk::from_encoding_key(&encoding, alg).context("public JWK")?;
        let kid = match kid {
            Some(k) => k.to_owned(),
            None => jwk.thumbprint(ThumbprintHash::SHA256)?,
        };
        jwk.common.key_id = Some(kid);
        jwk.common.key_algorithm = Some(match alg {
            Algorithm::ES256 => KeyAlgorithm::ES256,
            _ => KeyAlgorithm::RS256,
        });
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        Ok(DevKey {
            alg,
            encoding,
            jwk,
            private_pem: pem.to_owned(),
            public_pem,
        })
    }

    pub fn kid(&self) -> &str {
        self.jwk.common.key_id.as_deref().unwrap_or_default()
    }

    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// The private key, PKCS#8 PEM.
    pub fn private_pem(&self) -> &str {
        &self.private_pem
    }

    /// The public key, SPKI PEM (what an HS256 key-confusion attack would use as its secret).
    pub fn public_pem(&self) -> &str {
        &self.public_pem
    }

    /// A token over `claims` with header `{alg, typ: JWT, kid}`.
    pub fn sign(&self, claims: &Value) -> Result<String> {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid().to_owned());
        Ok(jsonwebtoken::encode(&header, claims, &self.encoding)?)
    }
}

/// The JWKS document (`{"keys": [...]}`) of `keys`' public halves.
pub fn jwks(keys: &[&DevKey]) -> String {
    let set = JwkSet {
        keys: keys.iter().map(|k| k.jwk.clone()).collect(),
    };
    serde_json::to_string(&set).expect("a JWKS serializes")
}

/// `{iss, aud, sub, iat, exp}` valid from now for `ttl_seconds`.
pub fn claims(issuer: &str, audience: &str, sub: &str, ttl_seconds: i64) -> Value {
    let now = unix_now();
    json!({"iss": issuer, "aud": audience, "sub": sub, "iat": now, "exp": now + ttl_seconds})
}

/// An unsigned `alg: none` token over `claims`, which every verifier must refuse.
pub fn unsigned_token(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{body}.")
}

/// An HS256 token over `claims` with `secret` (e.g. a public key: the key-confusion attack).
pub fn hs256_token(secret: &[u8], kid: Option<&str>, claims: &Value) -> Result<String> {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = kid.map(str::to_owned);
    Ok(jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_secret(secret)?,
    )?)
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

//! Customer tokens, one per simulated customer, signed with a development key: the PKCS#8 PEM
//! file `scripts/up.sh` creates (`.spin/dev-jwt/es256.pem`, whose JWKS the app was started
//! with), or any ES256 key whose public half is in the app's `auth_jwks`.

use std::path::Path;

use anyhow::{Context, Result};
use devtools::DevKey;
use jsonwebtoken::Algorithm;

pub struct Minter {
    key: DevKey,
    issuer: String,
    audience: String,
    ttl_seconds: i64,
}

impl Minter {
    /// The key in `pem_file`; its `kid` is `kid`, else the key's RFC 7638 thumbprint (what
    /// `spin-shop-dev keygen` publishes).
    pub fn from_file(
        pem_file: &Path,
        kid: Option<&str>,
        issuer: &str,
        audience: &str,
    ) -> Result<Minter> {
        let pem = std::fs::read_to_string(pem_file).with_context(|| {
            format!(
                "read the signing key {} (./scripts/up.sh creates .spin/dev-jwt/es256.pem; or pass --key)",
                pem_file.display()
            )
        })?;
        Ok(Minter {
            key: DevKey::from_pem(Algorithm::ES256, &pem, kid)?,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            // Long enough for any bounded run, polling included.
            ttl_seconds: 3 * 3600,
        })
    }

    /// A token whose `sub` is `user`.
    pub fn token(&self, user: &str) -> Result<String> {
        let claims = devtools::claims(&self.issuer, &self.audience, user, self.ttl_seconds);
        self.key.sign(&claims)
    }

    /// One `authorization` header value per user, in order.
    pub fn bearers(&self, users: &[String]) -> Result<Vec<String>> {
        users
            .iter()
            .map(|u| Ok(format!("Bearer {}", self.token(u)?)))
            .collect()
    }
}

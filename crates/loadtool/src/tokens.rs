//! Customer tokens, one per simulated customer, signed with a development key: a PKCS#8 PEM file
//! `scripts/up.sh` creates (`.spin/dev-jwt/es256.pem` or `rs256.pem`, whose JWKS the app was
//! started with), or any P-256 (ES256) or RSA (RS256) key whose public half is in the app's
//! `auth_jwks`.

use std::path::Path;

use anyhow::{Context, Result};
use devtools::DevKey;

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
            key: DevKey::from_any_pem(&pem, kid)?,
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

    /// One `authorization` header value per user, in order; signed on every core (thousands
    /// of signatures take seconds on one).
    pub fn bearers(&self, users: &[String]) -> Result<Vec<String>> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let chunk = users.len().div_ceil(threads).max(1);
        std::thread::scope(|s| {
            let parts: Vec<_> = users
                .chunks(chunk)
                .map(|part| {
                    s.spawn(move || {
                        part.iter()
                            .map(|u| Ok(format!("Bearer {}", self.token(u)?)))
                            .collect::<Result<Vec<_>>>()
                    })
                })
                .collect();
            let mut out = Vec::with_capacity(users.len());
            for part in parts {
                out.extend(part.join().expect("a signing thread panicked")?);
            }
            Ok(out)
        })
    }
}

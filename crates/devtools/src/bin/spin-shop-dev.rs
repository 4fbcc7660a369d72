//! `spin-shop-dev`: the local identity provider of a development checkout.
//!
//! - `keygen <dir>`: creates `<dir>/es256.pem` (PKCS#8, mode 0600) unless it exists, writes
//!   `<dir>/jwks.json` and prints the JWKS (what `scripts/up.sh` passes as `auth_jwks`).
//! - `token <dir> <user_id> [ttl_seconds]`: prints a token for `user_id` signed with that key;
//!   issuer and audience follow `SPIN_VARIABLE_AUTH_ISSUER` / `SPIN_VARIABLE_AUTH_AUDIENCE` as
//!   the app does, else the app's defaults.

use std::path::Path;

use anyhow::{bail, Context, Result};
use devtools::{claims, jwks, DevKey, DEFAULT_AUDIENCE, DEFAULT_ISSUER};
use jsonwebtoken::Algorithm;

const USAGE: &str = "usage: spin-shop-dev keygen <dir> | token <dir> <user_id> [ttl_seconds]";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["keygen", dir] => {
            let key = load_or_create(Path::new(dir))?;
            let set = jwks(&[&key]);
            std::fs::write(Path::new(dir).join("jwks.json"), &set).context("write jwks.json")?;
            println!("{set}");
        }
        ["token", dir, user] => print_token(Path::new(dir), user, 3600)?,
        ["token", dir, user, ttl] => {
            print_token(Path::new(dir), user, ttl.parse().context("ttl_seconds")?)?
        }
        _ => bail!("{USAGE}"),
    }
    Ok(())
}

fn print_token(dir: &Path, user: &str, ttl: i64) -> Result<()> {
    let pem = std::fs::read_to_string(dir.join("es256.pem"))
        .with_context(|| format!("no development key in {} (run keygen)", dir.display()))?;
    let key = DevKey::from_pem(Algorithm::ES256, &pem, None)?;
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let issuer = var("SPIN_VARIABLE_AUTH_ISSUER", DEFAULT_ISSUER);
    let audience = var("SPIN_VARIABLE_AUTH_AUDIENCE", DEFAULT_AUDIENCE);
    println!("{}", key.sign(&claims(&issuer, &audience, user, ttl))?);
    Ok(())
}

/// The key in `dir`, created on first use. The file is private to its owner: whoever reads it
/// can sign in as any customer of the local app.
fn load_or_create(dir: &Path) -> Result<DevKey> {
    let file = dir.join("es256.pem");
    if let Ok(pem) = std::fs::read_to_string(&file) {
        return DevKey::from_pem(Algorithm::ES256, &pem, None);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let key = DevKey::generate_es256(None)?;
    write_private(&file, key.private_pem())?;
    Ok(key)
}

fn write_private(file: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options
        .open(file)
        .with_context(|| format!("create {}", file.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

//! `spin-shop-dev`: the local identity provider of a development checkout.
//!
//! - `keygen <dir>`: creates `<dir>/es256.pem` (P-256) and `<dir>/rs256.pem` (RSA 2048), each
//!   PKCS#8, mode 0600, unless it exists; writes `<dir>/jwks.json` with both public keys and
//!   prints it (what `scripts/up.sh` passes as `auth_jwks`). Identity providers sign with either
//!   (RS256 is the usual default), and the app accepts both.
//! - `token <dir> <user_id> [ttl_seconds]`: prints a token for `user_id` signed with the ES256
//!   key (`SPIN_SHOP_DEV_ALG=RS256`: the RS256 one); issuer and audience follow
//!   `SPIN_VARIABLE_AUTH_ISSUER` / `SPIN_VARIABLE_AUTH_AUDIENCE` as the app does, else the app's
//!   defaults.
//! - `shards check --shards N [--runtime-config-file FILE]`: what layout each order shard file
//!   records; exits 1 when it is not N (`scripts/up.sh` runs it before starting the app).
//! - `reshard --from N --to M [--runtime-config-file FILE]`: with the app stopped, moves every
//!   customer's orders to the shard they hash to under M and records M (docs/deploy.md).
//!
//! The runtime config defaults to `runtime-config.toml`; relative paths in it are relative to
//! the working directory, as in Spin.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use devtools::{claims, jwks, shards, DevKey, DEFAULT_AUDIENCE, DEFAULT_ISSUER};
use jsonwebtoken::Algorithm;

const USAGE: &str = "usage: spin-shop-dev keygen <dir> | token <dir> <user_id> [ttl_seconds]
       | shards check --shards N [--runtime-config-file FILE]
       | reshard --from N --to M [--runtime-config-file FILE]";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["keygen", dir] => {
            let es256 = load_or_create(Path::new(dir), Algorithm::ES256)?;
            let rs256 = load_or_create(Path::new(dir), Algorithm::RS256)?;
            let set = jwks(&[&es256, &rs256]);
            std::fs::write(Path::new(dir).join("jwks.json"), &set).context("write jwks.json")?;
            println!("{set}");
        }
        ["token", dir, user] => print_token(Path::new(dir), user, 3600)?,
        ["token", dir, user, ttl] => {
            print_token(Path::new(dir), user, ttl.parse().context("ttl_seconds")?)?
        }
        ["shards", "check", rest @ ..] => shards_check(rest)?,
        ["reshard", rest @ ..] => reshard(rest)?,
        _ => bail!("{USAGE}"),
    }
    Ok(())
}

/// `--name value` options (each at most once) of a subcommand.
fn options<'a>(args: &[&'a str], known: &[&str]) -> Result<HashMap<String, &'a str>> {
    let mut out = HashMap::new();
    let mut it = args.iter();
    while let Some(name) = it.next() {
        let key = name.trim_start_matches("--");
        if !name.starts_with("--") || !known.contains(&key) {
            bail!("unknown argument {name}\n{USAGE}");
        }
        let value = it.next().with_context(|| format!("{name} needs a value"))?;
        out.insert(key.to_owned(), *value);
    }
    Ok(out)
}

fn shard_files(opts: &HashMap<String, &str>) -> Result<BTreeMap<u32, PathBuf>> {
    let rc = opts
        .get("runtime-config-file")
        .copied()
        .unwrap_or("runtime-config.toml");
    shards::shard_files(Path::new(rc))
}

fn required<'a>(opts: &HashMap<String, &'a str>, name: &str) -> Result<&'a str> {
    opts.get(name)
        .copied()
        .with_context(|| format!("--{name} is required\n{USAGE}"))
}

fn shards_check(args: &[&str]) -> Result<()> {
    let opts = options(args, &["shards", "runtime-config-file"])?;
    let n = shards::count(required(&opts, "shards")?)?;
    let (lines, ok) = shards::check(&shard_files(&opts)?, n)?;
    for line in lines {
        eprintln!("spin-shop-dev shards check: {line}");
    }
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}

fn reshard(args: &[&str]) -> Result<()> {
    let opts = options(args, &["from", "to", "runtime-config-file"])?;
    let from = shards::count(required(&opts, "from")?)?;
    let to = shards::count(required(&opts, "to")?)?;
    let moved = shards::reshard(&shard_files(&opts)?, from, to)?;
    println!(
        "resharded {from} -> {to}: {} customers ({} orders) moved; every shard records order_shards = {to}",
        moved.customers, moved.orders
    );
    Ok(())
}

fn print_token(dir: &Path, user: &str, ttl: i64) -> Result<()> {
    let alg = match std::env::var("SPIN_SHOP_DEV_ALG").as_deref() {
        Err(_) | Ok("ES256") => Algorithm::ES256,
        Ok("RS256") => Algorithm::RS256,
        Ok(other) => bail!("SPIN_SHOP_DEV_ALG={other}: ES256 or RS256"),
    };
    let file = dir.join(key_file(alg));
    let pem = std::fs::read_to_string(&file)
        .with_context(|| format!("no development key {} (run keygen)", file.display()))?;
    let key = DevKey::from_pem(alg, &pem, None)?;
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let issuer = var("SPIN_VARIABLE_AUTH_ISSUER", DEFAULT_ISSUER);
    let audience = var("SPIN_VARIABLE_AUTH_AUDIENCE", DEFAULT_AUDIENCE);
    println!("{}", key.sign(&claims(&issuer, &audience, user, ttl))?);
    Ok(())
}

fn key_file(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::RS256 => "rs256.pem",
        _ => "es256.pem",
    }
}

/// The `alg` key in `dir`, created on first use. The file is private to its owner: whoever
/// reads it can sign in as any customer of the local app.
fn load_or_create(dir: &Path, alg: Algorithm) -> Result<DevKey> {
    let file = dir.join(key_file(alg));
    if let Ok(pem) = std::fs::read_to_string(&file) {
        return DevKey::from_pem(alg, &pem, None);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let key = match alg {
        Algorithm::RS256 => DevKey::generate_rs256(None)?,
        _ => DevKey::generate_es256(None)?,
    };
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

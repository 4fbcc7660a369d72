//! Health probes: each function reports whether it can reach the stores it depends on by doing
//! one real round trip to each, so a green health route means the grants and URLs are right.

use serde::Serialize;
use spin_sdk::http::Response;

#[derive(Serialize)]
struct Report<'a> {
    status: &'static str,
    component: &'a str,
    checks: serde_json::Map<String, serde_json::Value>,
}

/// Runs every named check; 200 when all pass, 503 naming the failures otherwise.
pub fn report(component: &str, checks: &[(&str, &dyn Fn() -> anyhow::Result<()>)]) -> Response {
    let mut results = serde_json::Map::new();
    let mut healthy = true;
    for (name, check) in checks {
        let value = match check() {
            Ok(()) => serde_json::Value::String("ok".into()),
            Err(e) => {
                healthy = false;
                serde_json::Value::String(format!("error: {e:#}"))
            }
        };
        results.insert((*name).to_owned(), value);
    }
    let body = Report {
        status: if healthy { "ok" } else { "degraded" },
        component,
        checks: results,
    };
    crate::respond::json(if healthy { 200 } else { 503 }, &body)
}

/// Round trip to SQLite: `SELECT 1` on the database `label`.
pub fn sqlite_check(label: &str) -> anyhow::Result<()> {
    let conn = spin_sdk::sqlite::Connection::open(label)?;
    let rows = conn.execute("SELECT 1", &[])?;
    anyhow::ensure!(rows.rows.len() == 1, "SELECT 1 returned no row");
    Ok(())
}

/// Round trip to Redis: `PING` through `execute`.
pub fn redis_check(url: &str) -> anyhow::Result<()> {
    let conn = spin_sdk::redis::Connection::open(url)?;
    let out = conn.execute("PING", &[])?;
    anyhow::ensure!(!out.is_empty(), "PING returned nothing");
    Ok(())
}

/// Round trip to the default key-value store: write then read back a probe key.
pub fn kv_check(component: &str) -> anyhow::Result<()> {
    let store = spin_sdk::key_value::Store::open_default()?;
    let key = format!("health:{component}");
    store.set(&key, b"ok")?;
    anyhow::ensure!(
        store.get(&key)?.as_deref() == Some(b"ok".as_slice()),
        "probe key lost"
    );
    Ok(())
}

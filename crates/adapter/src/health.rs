//! Health probes: each function reports whether it can reach the stores it depends on by doing
//! one real round trip to each, so a green health route means the grants and URLs are right.

use std::collections::BTreeMap;

use serde::Serialize;
use spin_sdk::http::Response;

use crate::Problem;

/// What a check answered, as a client sees it: the cause of a failure is logged, never sent
/// (it can name hosts, ports, paths and library internals).
#[derive(Serialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum CheckOutcome {
    Ok,
    Failed,
}

#[derive(Serialize)]
struct Report<'a> {
    status: &'static str,
    component: &'a str,
    checks: BTreeMap<&'a str, CheckOutcome>,
}

/// Runs every named check; 200 when all pass, else a 503 problem (`type` `.../degraded`) with the
/// same stable members (`component`, `checks`: `ok` or `failed` each), each failure's cause
/// logged.
pub fn report(component: &str, checks: &[(&str, &dyn Fn() -> anyhow::Result<()>)]) -> Response {
    let mut results = BTreeMap::new();
    for (name, check) in checks {
        let outcome = match check() {
            Ok(()) => CheckOutcome::Ok,
            Err(e) => {
                eprintln!("{component}: health check {name} failed: {e:#}");
                CheckOutcome::Failed
            }
        };
        results.insert(*name, outcome);
    }
    let failed: Vec<&str> = results
        .iter()
        .filter(|(_, o)| **o == CheckOutcome::Failed)
        .map(|(n, _)| *n)
        .collect();
    if failed.is_empty() {
        let body = Report {
            status: "ok",
            component,
            checks: results,
        };
        return crate::respond::json(200, &body);
    }
    let detail = format!("health checks failed: {}", failed.join(", "));
    Problem::new(503, "degraded", "Degraded", detail)
        .with("component", component)
        .with("checks", &results)
        .into_response()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_check_is_a_stable_problem_without_its_cause() {
        let ok = || Ok(());
        let down = || Err(anyhow::anyhow!("connect 10.1.2.3:6379: Connection refused"));
        let resp = report("order", &[("sqlite", &ok), ("redis", &down)]);
        assert_eq!(*resp.status(), 503);
        let ct = resp.header("content-type").and_then(|v| v.as_str());
        assert_eq!(ct, Some("application/problem+json"));
        let body: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
        assert_eq!(body["status"], 503);
        assert_eq!(body["type"], "https://errors.spin-shop.dev/degraded");
        assert_eq!(body["component"], "order");
        assert_eq!(
            body["checks"],
            serde_json::json!({"redis": "failed", "sqlite": "ok"})
        );
        assert!(!String::from_utf8_lossy(resp.body()).contains("6379"));

        let resp = report("order", &[("sqlite", &ok)]);
        assert_eq!(*resp.status(), 200);
        let body: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
        assert_eq!(body["status"], "ok");
        assert_eq!(body["checks"], serde_json::json!({"sqlite": "ok"}));
    }
}

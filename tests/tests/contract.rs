//! Contract test: the running app (real `spin.toml`, real stock and order components, Redis and
//! SQLite) checked against `openapi.yaml` by schemathesis (PyPI; `.ci/run` installs it).
//!
//! Schemathesis generates valid and invalid requests for every operation in the document (its
//! examples, coverage, fuzzing and stateful phases, following the document's links from a created
//! order or reservation to the routes that use its id) and checks that no answer is a 5xx, that
//! every status code and content type is documented (every error is `application/problem+json`),
//! and that every body matches its schema. The run is bounded (`--max-examples`) and seeded, so it
//! is reproducible; override with `SCHEMATHESIS_MAX_EXAMPLES` / `SCHEMATHESIS_SEED`.

use std::path::PathBuf;
use std::process::Command;

use e2e::{customer_token, Shop, ADMIN_TOKEN, INTERNAL_TOKEN};
use serde_json::json;
use testkit::repo_root;

/// The schemathesis CLI: `$SCHEMATHESIS`, else `schemathesis` on the PATH, else the script
/// beside `python3` (pip's bin directory, which may not be on the PATH).
fn schemathesis() -> PathBuf {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("SCHEMATHESIS") {
        candidates.push(PathBuf::from(p));
    }
    candidates.push(PathBuf::from("schemathesis"));
    if let Ok(out) = Command::new("python3")
        .args([
            "-c",
            "import sys, os; print(os.path.dirname(sys.executable))",
        ])
        .output()
    {
        let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !dir.is_empty() {
            candidates.push(PathBuf::from(dir).join("schemathesis"));
        }
    }
    let runnable = |bin: &PathBuf| {
        Command::new(bin)
            .arg("--version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    candidates.into_iter().find(runnable).unwrap_or_else(|| {
        panic!(
            "schemathesis is not installed: `python3 -m pip install schemathesis` (.ci/run does)"
        )
    })
}

#[test]
fn the_running_app_honours_openapi_yaml() {
    let st = schemathesis();
    let shop = Shop::boot();
    let app = &shop.app;

    // The product the document's examples order, so positive examples reach the whole path.
    let put = shop.put_product(
        "CONTRACT-1",
        &json!({"name": "Contract product", "price": 1999, "currency": "EUR", "stock": 1_000_000}),
    );
    assert_eq!(put.status, 200, "{}", put.text());

    let max_examples =
        std::env::var("SCHEMATHESIS_MAX_EXAMPLES").unwrap_or_else(|_| "25".to_owned());
    let seed = std::env::var("SCHEMATHESIS_SEED").unwrap_or_else(|_| "1".to_owned());
    let work = shop.state_dir().join("schemathesis");
    std::fs::create_dir_all(&work).expect("work dir");
    // Each operation gets the credential of the security scheme it declares: the admin token,
    // the internal token, or a customer JWT for the owner of the document's example order
    // (`user-42`). One global header could not serve routes that need different credentials.
    let config = work.join("schemathesis.toml");
    std::fs::write(
        &config,
        format!(
            "[auth.openapi.adminToken]\nbearer = {:?}\n\n\
             [auth.openapi.internalToken]\nbearer = {:?}\n\n\
             [auth.openapi.customerJwt]\nbearer = {:?}\n",
            ADMIN_TOKEN,
            INTERNAL_TOKEN,
            customer_token("user-42"),
        ),
    )
    .expect("write schemathesis.toml");
    let out = Command::new(st)
        .current_dir(&work) // its .hypothesis cache stays out of the repository
        .env("NO_COLOR", "1")
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(repo_root().join("openapi.yaml"))
        .args(["--url", &app.base_url])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args(["--max-examples", &max_examples, "--seed", &seed])
        // One worker: CPython 3.11's ast.parse is not thread-safe ("AST constructor recursion
        // depth mismatch"), which hypothesis hits with several worker threads.
        .args(["--workers", "1"])
        .args(["--request-timeout", "30"])
        .output()
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis found contract violations ({}):\n{stdout}\n{stderr}\nhost stderr (tail):\n{}",
        out.status,
        tail(&app.stderr(), 60)
    );
}

fn tail(s: &str, lines: usize) -> String {
    let all: Vec<&str> = s.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[test]
#[ignore]
fn scratch_serve() {
    let shop = Shop::boot();
    let put = shop.put_product(
        "CONTRACT-1",
        &json!({"name": "Contract product", "price": 1999, "currency": "EUR", "stock": 1_000_000}),
    );
    assert_eq!(put.status, 200);
    std::fs::write(
        "/tmp/contract-url",
        format!(
            "{}\n{}\n{}",
            shop.app.base_url,
            shop.state_dir().display(),
            customer_token("user-42")
        ),
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3600));
}

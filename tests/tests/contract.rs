//! Contract test: the running app (real `spin.toml`, real stock and order components, Redis and
//! SQLite) checked against `openapi.yaml` by schemathesis (PyPI; `.ci/run` installs it).
//!
//! Schemathesis generates valid and invalid requests for every operation in the document (its
//! examples, coverage, fuzzing and stateful phases, following the document's links from a created
//! order or reservation to the routes that use its id) and runs every check it has
//! (`--checks all`): no 5xx, every status code, header and content type documented (every error
//! is `application/problem+json`), every body matching its schema, schema-valid requests
//! accepted and invalid ones refused, 405 with `Allow` for undeclared methods, and every
//! operation refusing a request without its credential. The hooks in `tests/contract/hooks.py`
//! make the catalog and the webhook signature reachable and list the few refusals that depend on
//! the shop's state rather than on the request.
//!
//! A clean run is not enough: the run's NDJSON events must show a 2xx answer from every
//! documented operation and every declared link followed. The run is bounded (`max-examples` in
//! the generated config) and seeded, so it is reproducible; override with
//! `SCHEMATHESIS_MAX_EXAMPLES` / `SCHEMATHESIS_SEED`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use e2e::{admin_auth, customer_token, Shop, ADMIN_TOKEN, INTERNAL_TOKEN, WEBHOOK_SECRET};
use serde_json::{json, Value};
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

/// The catalog the hooks map generated orders and reservations onto (`CONTRACT-1` is also the
/// SKU of the document's examples). Plenty of stock: every generated order may take up to 10^6.
const SKUS: [&str; 3] = ["CONTRACT-1", "CONTRACT-2", "CONTRACT-3"];

/// The coupon the hooks redeem generated tries against (also the document's example code): EUR,
/// no limit a run could reach.
const COUPON: &str = "CONTRACT10";

/// The flash sale the hooks send generated purchases to (also the document's example sale id):
/// started, a million units, a thousand per buyer (more than a run buys).
const SALE: &str = "contract-sale";

#[test]
fn the_running_app_honours_openapi_yaml() {
    let st = schemathesis();
    let shop = Shop::boot();
    let app = &shop.app;

    for sku in SKUS {
        let put = shop.put_product(
            sku,
            &json!({"name": format!("Contract product {sku}"), "price": 1999, "currency": "EUR", "stock": 1_000_000_000}),
        );
        assert_eq!(put.status, 200, "{}", put.text());
    }
    let coupon = shop.put_coupon(
        COUPON,
        &json!({"currency": "EUR", "percent_off": 10, "per_customer": 100_000_000}),
    );
    assert_eq!(coupon.status, 201, "{}", coupon.text());
    let dead_letter = plant_dead_letter(&shop);
    let ticket = plant_flash_ticket(&shop);

    let max_examples =
        std::env::var("SCHEMATHESIS_MAX_EXAMPLES").unwrap_or_else(|_| "25".to_owned());
    let seed = std::env::var("SCHEMATHESIS_SEED").unwrap_or_else(|_| "1".to_owned());
    // More scenarios for the stateful phase (cheap: a few ms a step), so that every declared
    // link is followed whatever the seed.
    let stateful_examples = max_examples.parse::<u32>().map_or(100, |n| n.max(1) * 4);
    let work = shop.state_dir().join("schemathesis");
    std::fs::create_dir_all(&work).expect("work dir");
    // Each operation gets the credential of the security scheme it declares: the admin token,
    // the internal token, or a customer JWT for the owner of the document's example order
    // (`user-42`). One global header could not serve routes that need different credentials;
    // `--checks all` (ignored_auth) also sends each without it.
    // The stateful phase follows the document's own links only (plus Location headers): the
    // links schemathesis infers from names crowded them out of its few scenarios, so declared
    // links went unfollowed depending on the seed.
    // Dead-letter replay needs a dead letter: the one planted above.
    let config = work.join("schemathesis.toml");
    std::fs::write(
        &config,
        format!(
            "[auth.openapi.adminToken]\nbearer = {:?}\n\n\
             [auth.openapi.internalToken]\nbearer = {:?}\n\n\
             [auth.openapi.customerJwt]\nbearer = {:?}\n\n\
             [generation]\nmax-examples = {max_examples}\n\n\
             [phases.stateful]\nmax-steps = 20\n\n\
             [phases.stateful.generation]\nmax-examples = {stateful_examples}\n\n\
             [phases.stateful.inference]\nalgorithms = [\"location-headers\"]\n\n\
             [[operations]]\ninclude-operation-id = \"opsReplayDeadLetter\"\n\
             parameters = {{ \"path.dead_letter_id\" = {:?} }}\n\n\
             [[operations]]\ninclude-operation-id = \"getFlashTicket\"\n\
             parameters = {{ \"path.sale_id\" = {SALE:?}, \"path.ticket_id\" = {ticket:?} }}\n",
            ADMIN_TOKEN,
            INTERNAL_TOKEN,
            customer_token("user-42"),
            dead_letter,
        ),
    )
    .expect("write schemathesis.toml");
    let events = work.join("events.ndjson");
    let out = Command::new(st)
        .current_dir(&work) // its .hypothesis cache stays out of the repository
        .env("NO_COLOR", "1")
        // tests/contract/hooks.py: seeded SKUs for generated orders and reservations, signed
        // webhooks, and the listed business refusals of schema-valid requests.
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .env("PYTHONPATH", repo_root().join("tests/contract"))
        .env("CONTRACT_SKUS", SKUS.join(","))
        .env("CONTRACT_COUPON", COUPON)
        .env("CONTRACT_SALE", SALE)
        .env("CONTRACT_WEBHOOK_SECRET", WEBHOOK_SECRET)
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(repo_root().join("openapi.yaml"))
        .args(["--url", &app.base_url])
        .args(["--checks", "all"])
        // --max-examples would override the stateful phase's own count: both are in the config.
        .args(["--seed", &seed])
        // One worker: CPython 3.11's ast.parse is not thread-safe ("AST constructor recursion
        // depth mismatch"), which hypothesis hits with several worker threads.
        .args(["--workers", "1"])
        .args(["--request-timeout", "30"])
        .args(["--report", "ndjson", "--report-ndjson-path"])
        .arg(&events)
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

    // Passing is not enough: a run whose requests never got past validation or auth checks
    // little. Every documented operation must have answered 2xx at least once, and the stateful
    // phase must have followed the links (created, then read, paid, confirmed, cancelled...).
    let run = Coverage::read(&events);
    let (documented, declared_links) = documented_operations();
    assert_eq!(
        run.operations_total,
        Some(documented.len()),
        "schemathesis loaded another number of operations than openapi.yaml documents"
    );
    let without_2xx: Vec<&String> = documented
        .iter()
        .filter(|op| !run.succeeded.contains(*op))
        .collect();
    assert!(
        without_2xx.is_empty(),
        "operations that never answered 2xx: {without_2xx:?}\n(2xx: {:?})\n{stdout}",
        run.succeeded
    );
    // Every link the document declares (createOrder -> getOrder, cancelOrder, paymentWebhook;
    // reserveStock -> getReservation, confirmReservation, releaseReservation; tryCoupon ->
    // getRedemption, confirmRedemption, cancelRedemption) was followed.
    let not_followed: Vec<&String> = declared_links
        .iter()
        .filter(|l| !run.links.contains(*l))
        .collect();
    assert!(
        declared_links.len() >= 9 && not_followed.is_empty(),
        "declared links never followed: {not_followed:?}\n(followed: {:?})\n{stdout}",
        run.links
    );
    eprintln!(
        "contract coverage: {}/{} operations answered 2xx; {} links followed: {:?}",
        run.succeeded.len(),
        documented.len(),
        run.links.len(),
        run.links
    );
    for line in stdout.lines().filter(|l| {
        [
            "Scenarios:",
            "API Links:",
            "Filtered:",
            "Test cases:",
            "generated,",
        ]
        .iter()
        .any(|k| l.contains(k))
    }) {
        eprintln!("schemathesis: {}", line.trim());
    }
}

/// Creates an order and turns its `OrderCreated` outbox row into a dead letter (as if every
/// delivery had failed), so `POST /api/ops/dead-letters/{id}/replay` has something to replay.
/// Returns the row's message id, asserting the ops API lists it.
/// The seeded sale, and a ticket of the document's example customer (`user-42`) in it, for
/// `GET /api/flash-sales/{sale_id}/tickets/{ticket_id}` (a random ticket id is nobody's).
fn plant_flash_ticket(shop: &Shop) -> String {
    let sale = e2e::sale_body(SKUS[0], 999, 1_000_000, 1000, -60, 3 * 3600);
    let put = shop.put_sale(SALE, &sale);
    assert_eq!(put.status, 201, "{}", put.text());
    let bought = shop
        .purchase("user-42", SALE, "contract-ticket")
        .expect("purchase");
    assert_eq!(bought.status, 202, "{}", bought.text());
    bought.json()["ticket_id"]
        .as_str()
        .expect("ticket_id")
        .to_owned()
}

fn plant_dead_letter(shop: &Shop) -> String {
    shop.create_order("contract-dead-letter", SKUS[0], 1);
    let rows = shop.sql("SELECT message_id FROM outbox ORDER BY created_at LIMIT 1");
    let id = rows
        .first()
        .and_then(|r| r["message_id"].as_str())
        .unwrap_or_else(|| panic!("no outbox row after creating an order: {rows:?}"))
        .to_owned();
    shop.sql(&format!(
        "UPDATE outbox SET published_at = NULL, dead_at = '2026-01-01T00:00:00.000Z', \
         attempts = 10, last_error = 'planted by the contract test' WHERE message_id = '{id}'"
    ));
    let (k, v) = admin_auth();
    let listed = shop
        .app
        .send("GET", "/api/ops/dead-letters", &[(k, &v)], None)
        .expect("GET dead letters");
    assert_eq!(listed.status, 200, "{}", listed.text());
    let body = listed.json();
    let ids: Vec<&str> = body["dead_letters"]
        .as_array()
        .map(|a| a.iter().filter_map(|d| d["message_id"].as_str()).collect())
        .unwrap_or_default();
    assert!(ids.contains(&id.as_str()), "{id} not listed: {body}");
    id
}

/// Every operation of openapi.yaml as `METHOD /path`, and every link it declares as schemathesis
/// names it (`POST /api/orders -> [201] GetOrder -> GET /api/orders/{order_id}`). Read with
/// PyYAML, which schemathesis brings along.
fn documented_operations() -> (Vec<String>, Vec<String>) {
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)",
        ])
        .arg(repo_root().join("openapi.yaml"))
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).expect("openapi.yaml as JSON");
    let methods = [
        "get", "put", "post", "delete", "patch", "head", "options", "trace",
    ];
    let mut ops = Vec::new();
    let mut by_id = std::collections::HashMap::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in methods {
            if let Some(op) = item.get(m) {
                let label = format!("{} {path}", m.to_uppercase());
                if let Some(id) = op["operationId"].as_str() {
                    by_id.insert(id.to_owned(), label.clone());
                }
                ops.push((label, op.clone()));
            }
        }
    }
    assert!(!ops.is_empty(), "no operations in openapi.yaml");
    let mut links = Vec::new();
    for (label, op) in &ops {
        for (status, response) in op["responses"].as_object().into_iter().flatten() {
            for (name, link) in response["links"].as_object().into_iter().flatten() {
                let target = link["operationId"]
                    .as_str()
                    .expect("links name an operationId");
                let target = by_id
                    .get(target)
                    .unwrap_or_else(|| panic!("link {name} to unknown operation {target}"));
                links.push(format!("{label} -> [{status}] {name} -> {target}"));
            }
        }
    }
    (ops.into_iter().map(|(label, _)| label).collect(), links)
}

/// What the run did, from its NDJSON event stream (`--report ndjson`).
struct Coverage {
    /// `operations.total` of the loaded schema.
    operations_total: Option<usize>,
    /// `METHOD /path` (as templated in the document) of every request answered 2xx.
    succeeded: BTreeSet<String>,
    /// Ids of the links the stateful phase applied.
    links: BTreeSet<String>,
}

impl Coverage {
    fn read(path: &std::path::Path) -> Coverage {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let mut run = Coverage {
            operations_total: None,
            succeeded: BTreeSet::new(),
            links: BTreeSet::new(),
        };
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let event: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not an NDJSON event ({e}): {line:.200}"));
            if let Some(total) =
                event["LoadingFinished"]["statistic"]["operations"]["total"].as_u64()
            {
                run.operations_total = Some(total as usize);
            }
            let recorder = &event["ScenarioFinished"]["recorder"];
            let (Some(cases), Some(interactions)) = (
                recorder["cases"].as_object(),
                recorder["interactions"].as_object(),
            ) else {
                continue;
            };
            for (id, case) in cases {
                let status = interactions
                    .get(id)
                    .and_then(|i| i["response"]["status_code"].as_u64());
                let value = &case["value"];
                if let (Some(200..=299), Some(method), Some(path)) =
                    (status, value["method"].as_str(), value["path"].as_str())
                {
                    run.succeeded.insert(format!("{method} {path}"));
                }
                if case["is_transition_applied"] == true {
                    if let Some(link) = case["transition"]["id"].as_str() {
                        run.links.insert(link.to_owned());
                    }
                }
            }
        }
        run
    }
}

fn tail(s: &str, lines: usize) -> String {
    let all: Vec<&str> = s.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

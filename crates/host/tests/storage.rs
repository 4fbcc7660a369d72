//! Key-value (fermyon:spin/key-value@2.0.0, wasi:keyvalue store/atomics/batch) and SQLite
//! (fermyon:spin/sqlite@2.0.0, spin:sqlite@3.0.0): every operation, every value type,
//! transactions across execute calls, persistence across host restarts, the default `.spin`
//! state dir, and named stores from a runtime config file (spin and redis types).

mod common;

use common::*;

const APP: &str = r#"
spin_manifest_version = 2
[application]
name = "storage"
[[trigger.http]]
route = "/..."
component = "ks"
[component.ks]
source = @kitchen_sink@
key_value_stores = ["default"]
sqlite_databases = ["default"]
"#;

#[test]
fn key_value_v2_every_operation() {
    let t = TestApp::new(APP);
    let app = t.start();
    let body = get_json(&app, "/kv/roundtrip?store=default");
    assert_eq!(body["open"], json!({ "ok": true }), "{body}");
    assert_eq!(body["set"], json!({ "ok": null }), "{body}");
    assert_eq!(body["get"], json!({ "ok": "v1" }), "{body}");
    assert_eq!(body["exists"], json!({ "ok": true }), "{body}");
    assert_eq!(
        body["get_keys"],
        json!({ "ok": ["kitchen-sink:key"] }),
        "{body}"
    );
    assert_eq!(body["delete"], json!({ "ok": null }), "{body}");
    assert_eq!(
        body["exists_after_delete"],
        json!({ "ok": false }),
        "{body}"
    );
    assert_eq!(body["get_after_delete"], json!({ "ok": null }), "{body}");
    assert_eq!(body["delete_missing"], json!({ "ok": null }), "{body}");
}

#[test]
fn wasi_keyvalue_store_atomics_batch() {
    let t = TestApp::new(APP);
    let app = t.start();
    let body = get_json(&app, "/wasi-kv/roundtrip?store=default");
    assert_eq!(body["open"], json!({ "ok": true }), "{body}");
    assert_eq!(body["set"], json!({ "ok": null }), "{body}");
    assert_eq!(body["get"], json!({ "ok": "w1" }), "{body}");
    assert_eq!(body["exists"], json!({ "ok": true }), "{body}");
    assert_eq!(
        body["list_keys"],
        json!({ "ok": ["wasi-kv:key"] }),
        "{body}"
    );
    assert_eq!(body["delete"], json!({ "ok": null }), "{body}");
    assert_eq!(
        body["exists_after_delete"],
        json!({ "ok": false }),
        "{body}"
    );
    assert_eq!(body["increment_5"], json!({ "ok": 5 }), "{body}");
    assert_eq!(body["increment_minus_2"], json!({ "ok": 3 }), "{body}");
    assert_eq!(body["set_many"], json!({ "ok": null }), "{body}");
    assert_get_many(
        &body["get_many"],
        &[("wasi-kv:b1", "one"), ("wasi-kv:b2", "two")],
    );
    assert_eq!(body["delete_many"], json!({ "ok": null }), "{body}");
    assert_get_many(&body["get_many_after_delete"], &[]);
    // Keys written by wasi:keyvalue are the same store as fermyon:spin/key-value's.
    get_json(&app, "/kv/set?store=default&key=shared&value=from-v2");
    let body = get_json(&app, "/wasi-kv/roundtrip?store=default");
    assert!(
        body["list_keys"]["ok"]
            .as_array()
            .is_some_and(|k| k.contains(&json!("shared"))),
        "{body}"
    );
}

/// `get-many` of b1, b2, b3: the present keys with their values, in request order; a missing
/// key is either left out (as Spin's SQLite store does) or reported as none (as the WIT says),
/// never with a value.
fn assert_get_many(result: &Value, present: &[(&str, &str)]) {
    let pairs = result["ok"]
        .as_array()
        .unwrap_or_else(|| panic!("get-many failed: {result}"));
    let mut with_values = Vec::new();
    for pair in pairs {
        let key = pair[0]
            .as_str()
            .unwrap_or_else(|| panic!("bad pair {pair}"));
        assert!(
            ["wasi-kv:b1", "wasi-kv:b2", "wasi-kv:b3"].contains(&key),
            "get-many returned a key it was not asked for: {result}"
        );
        match &pair[1] {
            Value::Null => {}
            Value::String(v) => with_values.push((key, v.as_str())),
            other => panic!("bad value {other} in {result}"),
        }
    }
    assert_eq!(with_values, present, "get-many: {result}");
}

#[test]
fn wasi_keyvalue_increment_is_atomic_under_concurrency() {
    let t = TestApp::new(APP);
    let app = t.start();
    let base = app.base_url.clone();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let base = base.clone();
            std::thread::spawn(move || {
                (0..8)
                    .map(|_| {
                        let r = testkit::request(
                            "GET",
                            &format!("{base}/wasi-kv/incr?store=default&key=hits&delta=1"),
                            &[],
                            None,
                        )
                        .expect("request");
                        assert_eq!(r.status, 200, "{}", r.text());
                        r.json()["ok"].as_i64().expect("increment result")
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seen: Vec<i64> = threads
        .into_iter()
        .flat_map(|h| h.join().expect("thread"))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        (1..=64).collect::<Vec<_>>(),
        "64 concurrent increments must each see a distinct value"
    );
}

fn sqlite_roundtrip(app: &SpinApp, version: &str) {
    let body = get_json(app, &format!("/{version}/roundtrip?db=default"));
    let ok = |k: &str| {
        assert!(body[k].get("ok").is_some(), "{version} {k} failed: {body}");
    };
    for k in [
        "open", "drop", "create", "insert", "insert_2", "begin", "rollback", "commit",
    ] {
        ok(k);
    }
    assert_eq!(
        body["select"]["ok"],
        json!({
            "columns": ["i", "r", "t", "b", "n"],
            "rows": [
                [{ "integer": i64::MAX }, { "real": -2.5 }, { "text": "héllo ✓" }, { "blob": [0, 1, 2, 255] }, "null"],
                [{ "integer": i64::MIN }, { "real": 0.0 }, { "text": "" }, { "blob": [] }, { "integer": 7 }],
            ]
        }),
        "{version}: {body}"
    );
    assert_eq!(
        body["select_param"]["ok"],
        json!({ "columns": ["t"], "rows": [[{ "text": "héllo ✓" }]] }),
        "{version}: {body}"
    );
    assert_eq!(body["bad_sql"]["error"], "io", "{version}: {body}");
    assert_eq!(body["count_in_tx"], json!({ "ok": 1 }), "{version}: {body}");
    assert_eq!(
        body["count_after_rollback"],
        json!({ "ok": 0 }),
        "{version}: {body}"
    );
    assert_eq!(
        body["count_after_commit"],
        json!({ "ok": 2 }),
        "{version}: {body}"
    );
}

#[test]
fn sqlite_v2_every_value_type_and_transactions() {
    let t = TestApp::new(APP);
    let app = t.start();
    sqlite_roundtrip(&app, "sqlite");
}

#[test]
fn sqlite_v3_every_value_type_transactions_rowid_changes() {
    let t = TestApp::new(APP);
    let app = t.start();
    sqlite_roundtrip(&app, "sqlite3");
    let body = get_json(&app, "/sqlite3/rowid?db=default");
    assert_eq!(body["last_insert_rowid"], 42, "{body}");
    assert_eq!(body["changes"], 2, "{body}");
}

#[test]
fn sqlite_transaction_does_not_leak_into_the_next_request() {
    // A request that BEGINs and INSERTs and never commits must not leave its transaction (or
    // its row) to a later request, even though the host pools connections: as in Spin, where
    // each request's connection is closed (rolled back) when the instance goes away.
    let t = TestApp::new(APP);
    let app = t.start();
    for v in ["sqlite", "sqlite3"] {
        for round in 0..3 {
            let body = get_json(&app, &format!("/{v}/dangling?db=default"));
            assert_eq!(
                body["ok"], 1,
                "{v} round {round}: inside its own transaction the request sees exactly its row \
                 (more means an earlier request's uncommitted row leaked): {body}"
            );
            // Each exec is its own request: BEGIN fails if a transaction is still open.
            for sql in ["SELECT COUNT(*) FROM ks_dangling", "BEGIN"] {
                let body = post_json(&app, &format!("/{v}/exec?db=default"), sql);
                assert!(
                    body.get("ok").is_some(),
                    "{v} round {round}: {sql} failed after a dangling transaction: {body}"
                );
                if sql.starts_with("SELECT") {
                    assert_eq!(
                        body["ok"]["rows"],
                        json!([[{ "integer": 0 }]]),
                        "{v} round {round}: an uncommitted row of an earlier request is visible: {body}"
                    );
                }
            }
        }
    }
}

#[test]
fn key_value_and_sqlite_persist_across_restarts() {
    let t = TestApp::new(APP);
    let app = t.start();
    assert_eq!(get_json(&app, "/kv/set?key=p&value=kept")["ok"], true);
    assert_eq!(get_json(&app, "/wasi-kv/incr?key=n&delta=41")["ok"], 41);
    assert_eq!(get_json(&app, "/sqlite/put?key=p&value=row-v2")["ok"], true);
    assert_eq!(
        get_json(&app, "/sqlite3/put?key=q&value=row-v3")["ok"],
        true
    );
    app.stop();

    let state = t.path("state");
    let files: Vec<_> = std::fs::read_dir(&state)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        !files.is_empty(),
        "nothing written under --state-dir {}",
        state.display()
    );

    let app = t.start();
    assert_eq!(get_json(&app, "/kv/get?key=p")["ok"], "kept");
    assert_eq!(get_json(&app, "/wasi-kv/incr?key=n&delta=1")["ok"], 42);
    assert_eq!(get_json(&app, "/sqlite/get?key=p")["ok"], "row-v2");
    assert_eq!(get_json(&app, "/sqlite3/get?key=q")["ok"], "row-v3");
    // v2 and v3 see the same default database.
    assert_eq!(get_json(&app, "/sqlite3/get?key=p")["ok"], "row-v2");

    // Another state dir is another set of stores.
    let other = SpinApp::builder(&t.manifest)
        .state_dir(t.path("other-state"))
        .start()
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(get_json(&other, "/kv/get?key=p")["ok"], Value::Null);
}

#[test]
fn default_state_dir_is_dot_spin_next_to_the_manifest() {
    let t = TestApp::new(APP);
    let app = SpinApp::builder(&t.manifest)
        .start()
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(get_json(&app, "/kv/set?key=a&value=b")["ok"], true);
    assert_eq!(get_json(&app, "/sqlite/put?key=a&value=b")["ok"], true);
    app.stop();
    let dot_spin = t.path(".spin");
    assert!(
        dot_spin.is_dir()
            && std::fs::read_dir(&dot_spin)
                .map(|mut d| d.next().is_some())
                .unwrap_or(false),
        "{} should hold the default stores",
        dot_spin.display()
    );
    let app = SpinApp::builder(&t.manifest)
        .start()
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(get_json(&app, "/kv/get?key=a")["ok"], "b");
    assert_eq!(get_json(&app, "/sqlite/get?key=a")["ok"], "b");
}

const NAMED: &str = r#"
spin_manifest_version = 2
[application]
name = "named-stores"
[[trigger.http]]
route = "/..."
component = "ks"
[component.ks]
source = @kitchen_sink@
key_value_stores = ["default", "local", "cache"]
sqlite_databases = ["default", "analytics"]
"#;

#[test]
fn runtime_config_named_stores_spin_and_redis() {
    let redis = RedisServer::start().expect("redis");
    let t = TestApp::new(NAMED);
    let rc = t.write(
        "runtime-config.toml",
        &format!(
            r#"
[key_value_store.local]
type = "spin"
path = "@dir@/local-kv.db"

[key_value_store.cache]
type = "redis"
url = "{url}"

[sqlite_database.analytics]
type = "spin"
path = "@dir@/analytics.db"
"#,
            url = redis.url()
        ),
    );
    let app = t
        .builder()
        .runtime_config(&rc)
        .start()
        .unwrap_or_else(|e| panic!("{e:#}"));

    // Redis-backed store: the value is in Redis, under the key itself.
    let body = get_json(&app, "/kv/roundtrip?store=cache");
    assert_eq!(body["get"], json!({ "ok": "v1" }), "{body}");
    assert_eq!(
        body["exists_after_delete"],
        json!({ "ok": false }),
        "{body}"
    );
    assert_eq!(
        get_json(&app, "/kv/set?store=cache&key=in-redis&value=yes")["ok"],
        true
    );
    assert_eq!(redis.cli(&["GET", "in-redis"]).unwrap(), "yes");
    redis.cli(&["SET", "from-cli", "hello"]).unwrap();
    assert_eq!(
        get_json(&app, "/kv/get?store=cache&key=from-cli")["ok"],
        "hello"
    );
    let body = get_json(&app, "/wasi-kv/roundtrip?store=cache");
    assert_eq!(body["increment_minus_2"], json!({ "ok": 3 }), "{body}");
    assert_get_many(
        &body["get_many"],
        &[("wasi-kv:b1", "one"), ("wasi-kv:b2", "two")],
    );

    // Spin-type store at the configured path, separate from `default`.
    assert_eq!(
        get_json(&app, "/kv/set?store=local&key=where&value=local")["ok"],
        true
    );
    assert_eq!(
        get_json(&app, "/kv/get?store=default&key=where")["ok"],
        Value::Null
    );
    assert!(
        t.path("local-kv.db").exists(),
        "local-kv.db not created at the configured path"
    );

    // Named SQLite database at the configured path, separate from `default`.
    let body = get_json(&app, "/sqlite/roundtrip?db=analytics");
    assert_eq!(body["count_after_commit"], json!({ "ok": 2 }), "{body}");
    assert_eq!(
        get_json(&app, "/sqlite3/put?db=analytics&key=k&value=analytics")["ok"],
        true
    );
    let body = get_json(&app, "/sqlite3/get?db=default&key=k");
    assert!(
        body["ok"].is_null() || body["error"] == "io",
        "default must not see the analytics table: {body}"
    );
    assert!(
        t.path("analytics.db").exists(),
        "analytics.db not created at the configured path"
    );
    app.stop();

    // Restart: the named spin store and database persist.
    let app = t
        .builder()
        .runtime_config(&rc)
        .start()
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(
        get_json(&app, "/kv/get?store=local&key=where")["ok"],
        "local"
    );
    assert_eq!(
        get_json(&app, "/sqlite3/get?db=analytics&key=k")["ok"],
        "analytics"
    );
    assert_eq!(
        get_json(&app, "/kv/get?store=cache&key=in-redis")["ok"],
        "yes"
    );
}

#[test]
fn sqlite_journal_mode_is_the_files_and_writers_wait_for_the_lock() {
    let t = TestApp::new(APP);
    let app = t.start();
    post_json(
        &app,
        "/sqlite/exec?db=default",
        "CREATE TABLE w (v INTEGER)",
    );
    // As in Spin, the host leaves the journal mode to the file: a new file is in rollback
    // journal mode, and a mode the app sets is the file's from then on.
    let body = post_json(&app, "/sqlite/exec?db=default", "PRAGMA journal_mode");
    assert_eq!(
        body["ok"]["rows"],
        json!([[{ "text": "delete" }]]),
        "{body}"
    );
    let body = post_json(&app, "/sqlite/exec?db=default", "PRAGMA journal_mode = WAL");
    assert_eq!(body["ok"]["rows"], json!([[{ "text": "wal" }]]), "{body}");
    let body = post_json(&app, "/sqlite/exec?db=default", "PRAGMA journal_mode");
    assert_eq!(body["ok"]["rows"], json!([[{ "text": "wal" }]]), "{body}");
    let base = app.base_url.clone();
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let base = base.clone();
            std::thread::spawn(move || {
                for j in 0..10 {
                    let sql = format!("INSERT INTO w (v) VALUES ({})", i * 100 + j);
                    let r = testkit::request(
                        "POST",
                        &format!("{base}/sqlite/exec?db=default"),
                        &[],
                        Some(sql.as_bytes()),
                    )
                    .expect("request");
                    let body = r.json();
                    assert!(body.get("ok").is_some(), "concurrent insert failed: {body}");
                }
            })
        })
        .collect();
    for h in threads {
        h.join().expect("thread");
    }
    let body = post_json(&app, "/sqlite/exec?db=default", "SELECT COUNT(*) FROM w");
    assert_eq!(body["ok"]["rows"], json!([[{ "integer": 80 }]]), "{body}");
}

#[test]
fn runtime_config_kv_relative_path_and_in_memory_store() {
    // As Spin: a relative `path` of a spin-type key-value store is resolved against the runtime
    // config file's directory; without a `path` the store lives in memory only.
    let t = TestApp::new(
        r#"
spin_manifest_version = 2
[application]
name = "kv-paths"
[[trigger.http]]
route = "/..."
component = "ks"
[component.ks]
source = @kitchen_sink@
key_value_stores = ["rel", "mem"]
"#,
    );
    std::fs::create_dir_all(t.path("rc")).unwrap();
    let rc = t.write(
        "rc/runtime-config.toml",
        "[key_value_store.rel]\ntype = \"spin\"\npath = \"data/rel.db\"\n\n[key_value_store.mem]\ntype = \"spin\"\n",
    );
    let start = || {
        t.builder()
            .runtime_config(&rc)
            .start()
            .unwrap_or_else(|e| panic!("{e:#}"))
    };
    let app = start();
    assert_eq!(
        get_json(&app, "/kv/set?store=rel&key=a&value=on-disk")["ok"],
        true
    );
    assert_eq!(
        get_json(&app, "/kv/set?store=mem&key=a&value=in-memory")["ok"],
        true
    );
    assert_eq!(get_json(&app, "/kv/get?store=mem&key=a")["ok"], "in-memory");
    assert!(
        t.path("rc/data/rel.db").exists(),
        "the relative path should resolve against the runtime config's directory"
    );
    app.stop();
    let app = start();
    assert_eq!(get_json(&app, "/kv/get?store=rel&key=a")["ok"], "on-disk");
    assert_eq!(
        get_json(&app, "/kv/get?store=mem&key=a")["ok"],
        Value::Null,
        "a store without a path must not persist across restarts"
    );
}

const APP_TIGHT: &str = r#"
spin_manifest_version = 2
[application]
name = "storage-tight"
[[trigger.http]]
route = "/..."
component = "ks"
[component.ks]
source = @kitchen_sink@
sqlite_databases = ["default", "tight"]
"#;

/// A guest that holds the write turn past its database's `write_turn_deadline_ms` (a key of
/// `[sqlite_database.<label>]` only this host knows) is aborted: its statements after the
/// deadline and its COMMIT fail with an error saying so (which ends it), nothing of it is kept,
/// and a writer that came meanwhile is let in and commits.
#[test]
fn a_transaction_holding_the_write_turn_past_its_deadline_is_aborted() {
    let t = TestApp::new(APP_TIGHT);
    let rc = t.write(
        "runtime-config.toml",
        "[sqlite_database.tight]\ntype = \"spin\"\npath = \"@dir@/tight.db\"\nwrite_turn_deadline_ms = 300\n",
    );
    let app = t.builder().runtime_config(&rc).start().expect("start");
    let create = "CREATE TABLE IF NOT EXISTS ks_hold (v TEXT)";
    assert!(post_json(&app, "/sqlite/exec?db=tight", create)["ok"].is_object());
    let base = app.base_url.clone();
    let holder = std::thread::spawn(move || {
        let url = format!("{base}/sqlite3/hold?db=tight&ms=1500");
        testkit::request("GET", &url, &[], None)
            .expect("hold")
            .json()
    });
    std::thread::sleep(std::time::Duration::from_millis(100));
    let other = post_json(
        &app,
        "/sqlite/exec?db=tight",
        "INSERT INTO ks_hold VALUES ('other')",
    );
    assert!(other["ok"].is_object(), "the next writer commits: {other}");
    let held = holder.join().expect("holder");
    assert_eq!(held["begin"]["ok"], true, "{held}");
    assert_eq!(held["insert"]["ok"], true, "{held}");
    for step in ["insert_after", "commit"] {
        let detail = held[step]["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains("aborted") && detail.contains("300 ms"),
            "{step} after the deadline must fail, saying why: {held}"
        );
    }
    assert_eq!(
        held["rollback"]["error"], "io",
        "no transaction is left: {held}"
    );
    assert_eq!(held["rows"]["ok"], json!(["other"]), "{held}");
}

/// A pragma a guest set on its connection does not carry over to the next guest, although the
/// host pools connections: here `query_only`, which would refuse the next guest's writes.
#[test]
fn a_pragma_a_guest_set_does_not_reach_the_next_guest() {
    let t = TestApp::new(APP);
    let app = t.start();
    let create = "CREATE TABLE IF NOT EXISTS ks_pragma (v INTEGER)";
    assert!(post_json(&app, "/sqlite/exec?db=default", create)["ok"].is_object());
    for round in 0..3 {
        let set = post_json(&app, "/sqlite/exec?db=default", "PRAGMA query_only = 1");
        assert!(set["ok"].is_object(), "{set}");
        let read = post_json(&app, "/sqlite/exec?db=default", "PRAGMA query_only");
        assert_eq!(
            read["ok"]["rows"],
            json!([[{ "integer": 0 }]]),
            "round {round}"
        );
        let insert = "INSERT INTO ks_pragma VALUES (1)";
        let wrote = post_json(&app, "/sqlite/exec?db=default", insert);
        assert!(wrote["ok"].is_object(), "round {round}: {wrote}");
    }
}

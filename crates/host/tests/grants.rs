//! Grants are enforced like Spin: a component that opens a store, database, Redis address,
//! host or variable it was not granted gets Spin's error (`access-denied`, `invalid-address`,
//! `undefined`, `HttpRequestDenied`) and never the data, while a granted sibling in the same
//! app (same state dir, same stores) works.
//!
//! `granted` is mounted at `/...`, `none` (no grants at all) at `/none/...`.

mod common;

use common::*;

fn app(redis: &RedisServer) -> TestApp {
    TestApp::new(&format!(
        r#"
spin_manifest_version = 2
[application]
name = "grants"

[variables]
app_secret = {{ default = "top-secret" }}

[[trigger.http]]
route = "/none/..."
component = "none"

[[trigger.http]]
route = "/..."
component = "granted"

[component.none]
source = @kitchen_sink@

[component.granted]
source = @kitchen_sink@
key_value_stores = ["default"]
sqlite_databases = ["default"]
allowed_outbound_hosts = ["{url}"]
[component.granted.variables]
secret = "{{{{ app_secret }}}}"
"#,
        url = redis.url()
    ))
}

#[test]
fn key_value_denied_without_grant_and_never_leaks() {
    let redis = RedisServer::start().expect("redis");
    let t = app(&redis);
    let app = t.start();
    let body = get_json(&app, "/kv/set?store=default&key=shared&value=private-data");
    assert_eq!(body["ok"], true, "granted set failed: {body}");

    let body = get_json(&app, "/none/kv/get?store=default&key=shared");
    assert_eq!(body["error"], "access-denied", "{body}");
    assert!(!body.to_string().contains("private-data"));
    let body = get_json(&app, "/none/kv/roundtrip?store=default");
    assert_eq!(body["open"]["error"], "access-denied", "{body}");
    let body = get_json(&app, "/none/wasi-kv/roundtrip?store=default");
    assert_eq!(body["open"]["error"], "access-denied", "{body}");
    let body = get_json(&app, "/none/wasi-kv/incr?store=default&key=n");
    assert_eq!(body["error"], "access-denied", "{body}");

    // Granted `default` only: any other label is denied, as in Spin (not no-such-store).
    let body = get_json(&app, "/kv/roundtrip?store=other");
    assert_eq!(body["open"]["error"], "access-denied", "{body}");
    let body = get_json(&app, "/wasi-kv/roundtrip?store=other");
    assert_eq!(body["open"]["error"], "access-denied", "{body}");
    // The granted component still reads its data.
    let body = get_json(&app, "/kv/get?store=default&key=shared");
    assert_eq!(body["ok"], "private-data", "{body}");
}

#[test]
fn sqlite_denied_without_grant_and_never_leaks() {
    let redis = RedisServer::start().expect("redis");
    let t = app(&redis);
    let app = t.start();
    for v in ["sqlite", "sqlite3"] {
        let body = get_json(
            &app,
            &format!("/{v}/put?db=default&key=k&value=private-row"),
        );
        assert_eq!(body["ok"], true, "{v}: {body}");
        let body = get_json(&app, &format!("/none/{v}/get?db=default&key=k"));
        assert_eq!(body["error"], "access-denied", "{v}: {body}");
        assert!(!body.to_string().contains("private-row"));
        let body = get_json(&app, &format!("/none/{v}/roundtrip?db=default"));
        assert_eq!(body["open"]["error"], "access-denied", "{v}: {body}");
        let body = get_json(&app, &format!("/{v}/roundtrip?db=other"));
        assert_eq!(body["open"]["error"], "access-denied", "{v}: {body}");
    }
}

#[test]
fn redis_denied_without_grant() {
    let redis = RedisServer::start().expect("redis");
    let other = RedisServer::start().expect("second redis");
    let t = app(&redis);
    let app = t.start();
    let body = get_json(
        &app,
        &format!(
            "/none/redis/roundtrip?url={}&prefix=denied",
            enc(&redis.url())
        ),
    );
    assert_eq!(body["open"]["error"], "invalid-address", "{body}");
    assert_eq!(redis.cli(&["EXISTS", "denied:key"]).unwrap(), "0");

    let body = get_json(
        &app,
        &format!("/redis/roundtrip?url={}&prefix=ok", enc(&redis.url())),
    );
    assert_eq!(body["open"]["ok"], true, "{body}");
    // A reachable Redis that is not in allowed_outbound_hosts.
    let body = get_json(
        &app,
        &format!("/redis/roundtrip?url={}&prefix=other", enc(&other.url())),
    );
    assert_eq!(body["open"]["error"], "invalid-address", "{body}");
    assert_eq!(other.cli(&["EXISTS", "other:key"]).unwrap(), "0");
    let body = get_json(
        &app,
        &format!(
            "/redis/publish?url={}&channel=c&payload=p",
            enc(&other.url())
        ),
    );
    assert_eq!(body["error"], "invalid-address", "{body}");
}

#[test]
fn outbound_http_denied_without_grant() {
    let redis = RedisServer::start().expect("redis");
    let server = TinyHttpServer::start("must-not-be-seen");
    let t = app(&redis);
    let app = t.start();
    let url = format!("http://127.0.0.1:{}/", server.port);
    for prefix in ["", "/none"] {
        let body = get_json(&app, &format!("{prefix}/http?url={}", enc(&url)));
        assert_eq!(body["error"], "HttpRequestDenied", "{prefix}: {body}");
        let body = get_json(
            &app,
            &format!("{prefix}/http?url={}", enc("http://none.spin.internal/")),
        );
        assert_eq!(body["error"], "HttpRequestDenied", "{prefix}: {body}");
    }
    assert_eq!(server.hits(), 0, "a denied request reached the server");
}

#[test]
fn variables_only_through_component_variables() {
    let redis = RedisServer::start().expect("redis");
    let t = app(&redis);
    let app = t.start();
    // `app_secret` is an application variable, but `none` declares no component variable.
    let body = get_json(&app, "/none/var?name=app_secret");
    assert_eq!(body["v2"]["error"], "undefined", "{body}");
    assert_eq!(body["wasi_config"]["ok"], Value::Null, "{body}");
    let body = get_json(&app, "/none/var?name=secret");
    assert_eq!(body["v2"]["error"], "undefined", "{body}");
    let body = get_json(&app, "/none/config/all");
    assert_eq!(body["ok"], json!({}), "{body}");

    let body = get_json(&app, "/var?name=secret");
    assert_eq!(body["v2"]["ok"], "top-secret", "{body}");
    assert_eq!(body["wasi_config"]["ok"], "top-secret", "{body}");
    // Application variables are reachable only through a component variable.
    let body = get_json(&app, "/var?name=app_secret");
    assert_eq!(body["v2"]["error"], "undefined", "{body}");
    assert_eq!(body["wasi_config"]["ok"], Value::Null, "{body}");
    let body = get_json(&app, "/config/all");
    assert_eq!(body["ok"], json!({ "secret": "top-secret" }), "{body}");
}

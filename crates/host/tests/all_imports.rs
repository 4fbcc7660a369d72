//! A component importing every interface spin-sdk 5.2 offers instantiates in the host (missing
//! host interfaces only show at instantiate time), the supported ones work, and the unsupported
//! ones (postgres 2/3/4, mysql, mqtt, llm) answer with an error value, never a trap.

mod common;

use common::*;

fn app(redis: &RedisServer) -> TestApp {
    TestApp::new(&format!(
        r#"
spin_manifest_version = 2
[application]
name = "all-imports"
[[trigger.http]]
route = "/..."
component = "all"
[component.all]
source = @all_imports@
key_value_stores = ["default"]
sqlite_databases = ["default"]
allowed_outbound_hosts = ["{url}", "postgres://127.0.0.1:1", "mysql://127.0.0.1:1", "mqtt://127.0.0.1:1"]
[component.all.variables]
who = "all"
"#,
        url = redis.url()
    ))
}

#[test]
fn instantiates_with_every_interface_imported() {
    let redis = RedisServer::start().expect("redis");
    let t = app(&redis);
    let app = t.start();
    let resp = app.get("/").expect("GET");
    assert_eq!(resp.status, 200, "{}\n{}", resp.text(), app.stderr());
    assert_eq!(resp.text(), "all-imports ok");
}

#[test]
fn supported_interfaces_answer() {
    let redis = RedisServer::start().expect("redis");
    let t = app(&redis);
    let app = t.start();
    let body = get_json(&app, &format!("/supported?url={}", enc(&redis.url())));
    for key in [
        "sqlite@2.0.0",
        "sqlite@3.0.0",
        "key-value@2.0.0",
        "wasi:keyvalue",
        "variables@2.0.0",
        "wasi:config",
        "redis@2.0.0",
    ] {
        assert!(body[key].get("ok").is_some(), "{key} failed: {body}");
    }
    assert_eq!(body["variables@2.0.0"]["ok"], "\"all\"", "{body}");
    assert_eq!(body["wasi:config"]["ok"], "Some(\"all\")", "{body}");
    assert_eq!(body["redis@2.0.0"]["ok"], "1", "{body}");
    // Outbound HTTP to a host that is not granted: an error value.
    assert!(
        body["wasi:http/outgoing-handler"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("HttpRequestDenied")),
        "{body}"
    );
}

#[test]
fn unsupported_interfaces_return_errors_not_traps() {
    let redis = RedisServer::start().expect("redis");
    let t = app(&redis);
    let app = t.start();
    let resp = app.get("/unsupported").expect("GET");
    assert_eq!(
        resp.status,
        200,
        "a call to an unsupported interface trapped: {}\n{}",
        resp.text(),
        app.stderr()
    );
    let body = resp.json();
    for key in [
        "postgres@2.0.0",
        "postgres@3.0.0",
        "postgres@4.0.0",
        "mysql@2.0.0",
        "mqtt@2.0.0",
        "llm@2.0.0/infer",
        "llm@2.0.0/generate-embeddings",
    ] {
        assert!(
            body[key].get("error").is_some(),
            "{key} should fail with an error value: {body}"
        );
    }
    // The instance keeps working after those errors.
    assert_eq!(app.get("/").unwrap().text(), "all-imports ok");
}

#[test]
fn mqtt_to_an_address_that_is_not_granted_fails_as_in_spin() {
    // Spin's outbound-mqtt factor: `connection-failed("address <addr> is not permitted")`.
    let t = TestApp::new(
        r#"
spin_manifest_version = 2
[application]
name = "mqtt-not-granted"
[[trigger.http]]
route = "/..."
component = "all"
[component.all]
source = @all_imports@
allowed_outbound_hosts = ["mqtt://127.0.0.1:2"]
"#,
    );
    let elsewhere = t.start();
    let body = get_json(&elsewhere, "/unsupported");
    let error = body["mqtt@2.0.0"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(r#"ConnectionFailed("address mqtt://127.0.0.1:1 is not permitted")"#),
        "{body}"
    );

    // Granted: it gets past the grant and fails for want of a backend.
    let redis = RedisServer::start().expect("redis");
    let t = app(&redis);
    let granted = t.start();
    let body = get_json(&granted, "/unsupported");
    let error = body["mqtt@2.0.0"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("ConnectionFailed") && !error.contains("not permitted"),
        "{body}"
    );
}

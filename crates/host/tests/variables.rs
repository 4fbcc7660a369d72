//! Variables: `[variables]` defaults, required and secret variables, component templates
//! (`{{ name }}`), `SPIN_VARIABLE_<NAME>` overrides, fermyon:spin/variables and wasi:config.

mod common;

use std::time::Duration;

use common::*;

const APP: &str = r#"
spin_manifest_version = 2
[application]
name = "variables"

[variables]
greeting = { default = "hello" }
api_token = { required = true, secret = true }
unused = { default = "never-seen" }

[[trigger.http]]
route = "/..."
component = "ks"

[component.ks]
source = @kitchen_sink@
[component.ks.variables]
who = "ks"
greeting = "{{ greeting }}, world"
token = "{{ api_token }}"
literal = "plain {text}"
"#;

#[test]
fn defaults_templates_and_environment_overrides() {
    let t = TestApp::new(APP);
    let app = t
        .builder()
        .variable("api_token", "s3cret")
        .start()
        .unwrap_or_else(|e| panic!("{e:#}"));
    let body = get_json(&app, "/var?name=greeting");
    assert_eq!(body["v2"]["ok"], "hello, world", "{body}");
    assert_eq!(body["wasi_config"]["ok"], "hello, world", "{body}");
    let body = get_json(&app, "/var?name=token");
    assert_eq!(body["v2"]["ok"], "s3cret", "{body}");
    let body = get_json(&app, "/var?name=literal");
    assert_eq!(body["v2"]["ok"], "plain {text}", "{body}");
    // An application variable the component does not declare.
    let body = get_json(&app, "/var?name=unused");
    assert_eq!(body["v2"]["error"], "undefined", "{body}");
    assert_eq!(body["wasi_config"]["ok"], Value::Null, "{body}");
    // Names must be lower snake case: invalid-name for v2, none for wasi:config (as Spin).
    let body = get_json(&app, &format!("/var?name={}", enc("Bad-Name")));
    assert_eq!(body["v2"]["error"], "invalid-name", "{body}");
    assert_eq!(body["wasi_config"]["ok"], Value::Null, "{body}");
    let body = get_json(&app, "/config/all");
    assert_eq!(
        body["ok"],
        json!({ "greeting": "hello, world", "literal": "plain {text}", "token": "s3cret", "who": "ks" }),
        "{body}"
    );
    // The secret never appears in the host's output.
    assert!(!app.stderr().contains("s3cret") && !app.stdout().contains("s3cret"));
}

#[test]
fn environment_overrides_a_default() {
    let t = TestApp::new(APP);
    let app = t
        .builder()
        .variable("api_token", "x")
        .variable("greeting", "bonjour")
        .start()
        .unwrap_or_else(|e| panic!("{e:#}"));
    let body = get_json(&app, "/var?name=greeting");
    assert_eq!(body["v2"]["ok"], "bonjour, world", "{body}");
}

#[test]
fn missing_required_variable_fails_at_startup() {
    let t = TestApp::new(APP);
    let (status, stdout, stderr) = t
        .builder()
        .run_to_exit(Duration::from_secs(60))
        .expect("run");
    assert_clean_failure(status, &stdout, &stderr, &["api_token"]);
}

#[test]
fn template_naming_an_unknown_variable_fails_at_startup() {
    let t = TestApp::new(
        r#"
spin_manifest_version = 2
[application]
name = "bad-template"
[[trigger.http]]
route = "/..."
component = "ks"
[component.ks]
source = @kitchen_sink@
[component.ks.variables]
x = "{{ not_declared }}"
"#,
    );
    let (status, stdout, stderr) = t
        .builder()
        .run_to_exit(Duration::from_secs(60))
        .expect("run");
    assert_clean_failure(status, &stdout, &stderr, &["not_declared"]);
}

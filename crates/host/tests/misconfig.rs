//! Every misconfiguration ends the host with a non-zero exit and a clear message on stderr,
//! never a panic; and `--build` runs each component's build command before loading it.

mod common;

use std::time::Duration;

use common::*;

const TIMEOUT: Duration = Duration::from_secs(60);

/// Writes `manifest`, runs the host on it to exit and asserts a clean failure naming `needles`.
fn fails_with(manifest: &str, needles: &[&str]) {
    let t = TestApp::new(manifest);
    runs_to_clean_failure(t.builder(), needles);
}

/// Runs the host to exit and asserts a non-zero exit, no panic and a message naming every
/// `needles`; returns stdout and stderr for tests that check more. The one place these steps
/// are spelled out, so every misconfiguration test checks the same things.
fn runs_to_clean_failure(builder: testkit::SpinAppBuilder, needles: &[&str]) -> (String, String) {
    let (status, stdout, stderr) = builder.run_to_exit(TIMEOUT).expect("run");
    assert_clean_failure(status, &stdout, &stderr, needles);
    assert_eq!(status.code(), Some(1), "exit status\nstderr:\n{stderr}");
    (stdout, stderr)
}

/// Spin's refusal, word for word (`spin_trigger::cli`), for a trigger type other than HTTP that
/// runs a component granted a `*.spin.internal` host.
fn needs_service_chaining(trigger: &str) -> String {
    format!("This application requires the following features that are not available in this version of the '{trigger}' trigger: local_service_chaining")
}

#[test]
fn missing_wasm_file() {
    fails_with(
        r#"
spin_manifest_version = 2
[application]
name = "missing-wasm"
[[trigger.http]]
route = "/..."
component = "ks"
[component.ks]
source = "/definitely/not/here/missing-component.wasm"
"#,
        &["missing-component.wasm"],
    );
}

#[test]
fn a_file_that_is_not_a_component() {
    let t = TestApp::new(
        r#"
spin_manifest_version = 2
[application]
name = "garbage-wasm"
[[trigger.http]]
route = "/..."
component = "ks"
[component.ks]
source = "garbage.wasm"
"#,
    );
    std::fs::write(t.path("garbage.wasm"), b"this is not wasm").unwrap();
    runs_to_clean_failure(t.builder(), &["garbage.wasm", "\"ks\""]);
}

#[test]
fn toml_syntax_error() {
    fails_with(
        "spin_manifest_version = 2\n[application\nname = \"broken\"\n",
        &["spin.toml"],
    );
}

#[test]
fn unknown_field_in_component() {
    fails_with(
        r#"
spin_manifest_version = 2
[application]
name = "unknown-field"
[[trigger.http]]
route = "/..."
component = "ks"
[component.ks]
source = @kitchen_sink@
allowed_outbound_hostz = ["http://example.com"]
"#,
        &["allowed_outbound_hostz"],
    );
}

#[test]
fn unknown_field_in_trigger() {
    fails_with(
        r#"
spin_manifest_version = 2
[application]
name = "unknown-trigger-field"
[[trigger.http]]
route = "/..."
component = "ks"
methods = ["GET"]
[component.ks]
source = @kitchen_sink@
"#,
        &["methods"],
    );
}

#[test]
fn wrong_manifest_version() {
    fails_with(
        r#"
spin_manifest_version = 7
[application]
name = "v7"
"#,
        &["spin_manifest_version"],
    );
}

#[test]
fn trigger_names_an_unknown_component() {
    fails_with(
        r#"
spin_manifest_version = 2
[application]
name = "unknown-component"
[[trigger.http]]
route = "/..."
component = "ghost"
[component.ks]
source = @kitchen_sink@
"#,
        &["ghost"],
    );
}

#[test]
fn duplicate_route_last_one_wins_with_a_warning() {
    // As Spin: a duplicated route is not an error; the later component wins and the host warns.
    let t = TestApp::new(
        r#"
spin_manifest_version = 2
[application]
name = "duplicate-route"
[[trigger.http]]
route = "/same/..."
component = "a"
[[trigger.http]]
route = "/same/..."
component = "b"
[component.a]
source = @kitchen_sink@
[component.a.variables]
who = "a"
[component.b]
source = @kitchen_sink@
[component.b.variables]
who = "b"
"#,
    );
    let app = t.start();
    assert_eq!(get_json(&app, "/same/x")["who"], "b");
    let all = format!("{}{}", app.stdout(), app.stderr());
    assert!(
        all.contains("/same"),
        "no warning naming the duplicated route:\n{all}"
    );
}

#[test]
fn key_value_label_without_a_store() {
    fails_with(
        r#"
spin_manifest_version = 2
[application]
name = "unknown-kv-label"
[[trigger.http]]
route = "/..."
component = "ks"
[component.ks]
source = @kitchen_sink@
key_value_stores = ["default", "nowhere_store"]
"#,
        &["nowhere_store"],
    );
}

#[test]
fn sqlite_label_without_a_database() {
    fails_with(
        r#"
spin_manifest_version = 2
[application]
name = "unknown-sqlite-label"
[[trigger.http]]
route = "/..."
component = "ks"
[component.ks]
source = @kitchen_sink@
sqlite_databases = ["default", "nowhere_db"]
"#,
        &["nowhere_db"],
    );
}

#[test]
fn every_bad_label_is_reported_at_once() {
    // Each capability checks every component before the host gives up, so one start-up names
    // every undefined key-value store and SQLite database, of every component, in one error.
    let (_, stderr) = runs_to_clean_failure(
        TestApp::new(
            r#"
spin_manifest_version = 2
[application]
name = "many-bad-labels"
[[trigger.http]]
route = "/a/..."
component = "a"
[[trigger.http]]
route = "/b/..."
component = "b"
[component.a]
source = @kitchen_sink@
key_value_stores = ["default", "nowhere_store_a"]
[component.b]
source = @kitchen_sink@
key_value_stores = ["nowhere_store_b"]
sqlite_databases = ["default", "nowhere_db_b"]
"#,
        )
        .builder(),
        &[
            "nowhere_store_a",
            "nowhere_store_b",
            "nowhere_db_b",
            "component \"a\"",
            "component \"b\"",
        ],
    );
    let errors = stderr.matches("error:").count();
    assert_eq!(
        errors, 1,
        "expected one error listing every label:\n{stderr}"
    );
}

#[test]
fn bad_runtime_config() {
    let t = TestApp::new(
        r#"
spin_manifest_version = 2
[application]
name = "bad-rc"
[[trigger.http]]
route = "/..."
component = "ks"
[component.ks]
source = @kitchen_sink@
"#,
    );
    let rc = t.write(
        "rc.toml",
        "[key_value_store.x]\ntype = \"carrier-pigeon\"\n",
    );
    runs_to_clean_failure(t.builder().runtime_config(&rc), &["carrier-pigeon"]);

    runs_to_clean_failure(
        t.builder().runtime_config(t.path("no-such-rc.toml")),
        &["no-such-rc.toml"],
    );
}

#[test]
fn unreachable_redis_for_the_trigger() {
    let closed = testkit::free_port();
    fails_with(
        &format!(
            r#"
spin_manifest_version = 2
[application]
name = "unreachable-redis"
[application.trigger.redis]
address = "redis://127.0.0.1:{closed}"
[[trigger.redis]]
channel = "events"
component = "listener"
[component.listener]
source = @redis_listener@
"#
        ),
        &[&format!("127.0.0.1:{closed}")],
    );
}

#[test]
fn bad_cron_expression() {
    fails_with(
        r#"
spin_manifest_version = 2
[application]
name = "bad-cron"
[[trigger.cron]]
component = "ticker"
cron_expression = "every tuesday"
[component.ticker]
source = @cron_ticker@
"#,
        &["every tuesday"],
    );
}

#[test]
fn port_in_use() {
    let t = TestApp::new(
        r#"
spin_manifest_version = 2
[application]
name = "port-in-use"
[[trigger.http]]
route = "/..."
component = "ks"
[component.ks]
source = @kitchen_sink@
"#,
    );
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let logs = tempfile::tempdir().unwrap();
    let (status, stdout, stderr) = t
        .builder()
        .run_to_exit_on(&addr, logs.path(), TIMEOUT)
        .expect("run");
    assert_clean_failure(status, &stdout, &stderr, &[&addr]);
}

#[test]
fn missing_manifest_file() {
    let dir = tempfile::tempdir().unwrap();
    runs_to_clean_failure(
        SpinApp::builder(dir.path().join("nope.toml")),
        &["nope.toml"],
    );
}

#[test]
fn build_flag_runs_build_commands_before_loading() {
    // The component's source does not exist until its build command produces it.
    let wasm = testkit::wasm("kitchen_sink");
    let t = TestApp::new(&format!(
        r#"
spin_manifest_version = 2
[application]
name = "build"
[[trigger.http]]
route = "/..."
component = "ks"
[component.ks]
source = "built/ks.wasm"
[component.ks.build]
command = "mkdir -p built && cp {wasm} built/ks.wasm && echo ran > built/marker.txt"
"#,
        wasm = wasm.display()
    ));
    // Without --build the source is missing: a clean failure.
    runs_to_clean_failure(t.builder(), &["ks.wasm"]);

    let app = t
        .builder()
        .arg("--build")
        .start()
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(
        std::fs::read_to_string(t.path("built/marker.txt")).unwrap_or_default(),
        "ran\n",
        "the build command did not run in the manifest's directory"
    );
    assert_eq!(app.get("/anything").unwrap().status, 200);
}

#[test]
fn failing_build_command_stops_the_host() {
    let t = TestApp::new(
        r#"
spin_manifest_version = 2
[application]
name = "build-fails"
[[trigger.http]]
route = "/..."
component = "ks"
[component.ks]
source = @kitchen_sink@
[component.ks.build]
command = "echo build-went-wrong >&2; exit 3"
"#,
    );
    let (stdout, stderr) = runs_to_clean_failure(t.builder().arg("--build"), &["\"ks\""]);
    assert!(
        format!("{stdout}{stderr}").contains("build-went-wrong"),
        "the build command's own output should be shown:\n{stderr}"
    );
}

#[test]
fn redis_trigger_without_an_address() {
    fails_with(
        r#"
spin_manifest_version = 2
[application]
name = "no-redis-address"
[[trigger.redis]]
channel = "events"
component = "listener"
[component.listener]
source = @redis_listener@
"#,
        &["address"],
    );
}

#[test]
fn redis_trigger_address_that_is_not_a_url() {
    fails_with(
        r#"
spin_manifest_version = 2
[application]
name = "bad-redis-address"
[application.trigger.redis]
address = "definitely not a url"
[[trigger.redis]]
channel = "events"
component = "listener"
[component.listener]
source = @redis_listener@
"#,
        &["definitely not a url"],
    );
}

#[test]
fn source_is_a_directory() {
    let t = TestApp::new(
        r#"
spin_manifest_version = 2
[application]
name = "dir-source"
[[trigger.http]]
route = "/..."
component = "ks"
[component.ks]
source = "a-directory.wasm"
"#,
    );
    std::fs::create_dir_all(t.path("a-directory.wasm")).unwrap();
    runs_to_clean_failure(t.builder(), &["a-directory.wasm"]);
}

#[test]
fn empty_manifest() {
    fails_with("", &["spin_manifest_version"]);
}

#[test]
fn cron_component_granted_service_chaining_is_refused() {
    // The same component is also on the HTTP trigger, where it could chain: Spin still refuses
    // the cron trigger, which checks every component its own triggers run.
    let (_, stderr) = {
        let t = TestApp::new(
            r#"
spin_manifest_version = 2
[application]
name = "cron-chaining"
[[trigger.http]]
route = "/..."
component = "ticker"
[[trigger.cron]]
component = "ticker"
cron_expression = "* * * * * *"
[component.ticker]
source = @cron_ticker@
allowed_outbound_hosts = ["http://*.spin.internal"]
"#,
        );
        runs_to_clean_failure(
            t.builder(),
            &[
                &needs_service_chaining("cron"),
                "component \"ticker\"",
                "http://*.spin.internal",
            ],
        )
    };
    assert!(!stderr.contains("'http' trigger"), "{stderr}");
}

#[test]
fn redis_component_granted_service_chaining_by_a_template_is_refused() {
    // The grant is a template that resolves to a chaining host; the check comes before the
    // trigger connects to Redis (nothing listens on that port).
    let closed = testkit::free_port();
    let t = TestApp::new(&format!(
        r#"
spin_manifest_version = 2
[application]
name = "redis-chaining"
[application.trigger.redis]
address = "redis://127.0.0.1:{closed}"
[variables]
chain = {{ default = "http://ks.spin.internal" }}
[[trigger.redis]]
channel = "events"
component = "listener"
[[trigger.http]]
route = "/..."
component = "ks"
[component.listener]
source = @redis_listener@
allowed_outbound_hosts = ["{{{{ chain }}}}"]
[component.ks]
source = @kitchen_sink@
"#
    ));
    let (_, stderr) = runs_to_clean_failure(
        t.builder(),
        &[&needs_service_chaining("redis"), "component \"listener\""],
    );
    assert!(!stderr.contains(&closed.to_string()), "{stderr}");
}

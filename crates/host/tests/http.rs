//! HTTP trigger: Spin's routing (exact, trailing wildcard, most specific wins, 404, private
//! components), the `spin-*` request headers, service chaining through
//! `http://<id>.spin.internal` (granted and denied), outbound HTTP grants and the request log.

mod common;

use common::*;

/// Five components over the same kitchen-sink wasm, told apart by their `who` variable.
const ROUTES: &str = r#"
spin_manifest_version = 2

[application]
name = "routing"

[[trigger.http]]
route = "/exact"
component = "a"

[[trigger.http]]
route = "/wild/..."
component = "b"

[[trigger.http]]
route = "/wild/deeper/..."
component = "c"

[[trigger.http]]
route = "/wild/deeper/exact"
component = "d"

[[trigger.http]]
route = { private = true }
component = "e"

[component.a]
source = @kitchen_sink@
allowed_outbound_hosts = ["http://e.spin.internal", "http://b.spin.internal"]
[component.a.variables]
who = "a"

[component.b]
source = @kitchen_sink@
[component.b.variables]
who = "b"

[component.c]
source = @kitchen_sink@
[component.c.variables]
who = "c"

[component.d]
source = @kitchen_sink@
allowed_outbound_hosts = ["http://*.spin.internal"]
[component.d.variables]
who = "d"

[component.e]
source = @kitchen_sink@
[component.e.variables]
who = "e"
"#;

fn who(app: &SpinApp, path: &str) -> (u16, Option<String>) {
    let resp = app.get(path).expect("request");
    if resp.status != 200 {
        return (resp.status, None);
    }
    let body = resp.json();
    (200, body["who"].as_str().map(str::to_owned))
}

#[test]
fn routing_exact_wildcard_most_specific_and_404() {
    let t = TestApp::new(ROUTES);
    let app = t.start();
    let expect = |path: &str, component: &str| {
        assert_eq!(
            who(&app, path),
            (200, Some(component.to_owned())),
            "GET {path} should reach component {component}"
        );
    };
    expect("/exact", "a");
    expect("/exact?x=1", "a");
    expect("/wild", "b");
    expect("/wild/", "b");
    expect("/wild/x", "b");
    expect("/wild/x/y/z", "b");
    expect("/wild/deeper", "c");
    expect("/wild/deeper/x", "c");
    expect("/wild/deeper/exact", "d");
    expect("/wild/deeper/exact/more", "c");
    expect("/wild/deeperish", "b");

    for path in ["/", "/exact/more", "/exactly", "/nothing", "/wil", "/e"] {
        let resp = app.get(path).expect("request");
        assert_eq!(
            resp.status,
            404,
            "GET {path} should be 404, body {}",
            resp.text()
        );
    }
}

#[test]
fn methods_and_body_reach_the_component() {
    let t = TestApp::new(ROUTES);
    let app = t.start();
    let resp = app
        .send(
            "PUT",
            "/wild/put-me",
            &[("x-custom", "yes")],
            Some(b"payload bytes"),
        )
        .expect("PUT");
    assert_eq!(resp.status, 200, "{}", resp.text());
    let body = resp.json();
    assert_eq!(body["method"], "PUT");
    assert_eq!(body["path"], "/wild/put-me");
    assert_eq!(body["body"], "payload bytes");
    assert_eq!(body["headers"]["x-custom"], "yes");
}

#[test]
fn spin_headers_on_a_wildcard_route() {
    let t = TestApp::new(ROUTES);
    let app = t.start();
    let body = get_json(&app, "/wild/x/y?q=1&r=two");
    let h = &body["headers"];
    assert_eq!(
        h["spin-full-url"],
        format!("http://127.0.0.1:{}/wild/x/y?q=1&r=two", app.port)
    );
    assert_eq!(h["spin-path-info"], "/x/y");
    assert_eq!(h["spin-matched-route"], "/wild/...");
    assert_eq!(h["spin-base-path"], "/");
    assert_eq!(h["spin-raw-component-route"], "/wild/...");
    assert_eq!(h["spin-component-route"], "/wild");
    let client = h["spin-client-addr"].as_str().unwrap_or_default();
    assert!(
        client.starts_with("127.0.0.1:") && client["127.0.0.1:".len()..].parse::<u16>().is_ok(),
        "spin-client-addr should be the peer address, got {client:?}"
    );
    assert_eq!(body["query"], "q=1&r=two");
}

#[test]
fn spin_headers_on_an_exact_route() {
    let t = TestApp::new(ROUTES);
    let app = t.start();
    let body = get_json(&app, "/exact");
    let h = &body["headers"];
    assert_eq!(
        h["spin-full-url"],
        format!("http://127.0.0.1:{}/exact", app.port)
    );
    assert_eq!(h["spin-path-info"], "");
    assert_eq!(h["spin-matched-route"], "/exact");
    assert_eq!(h["spin-base-path"], "/");
    assert_eq!(h["spin-raw-component-route"], "/exact");
    assert_eq!(h["spin-component-route"], "/exact");
}

#[test]
fn client_cannot_spoof_spin_headers() {
    let t = TestApp::new(ROUTES);
    let app = t.start();
    let resp = app
        .send(
            "GET",
            "/wild/real",
            &[
                ("spin-path-info", "/spoofed"),
                ("spin-matched-route", "/spoofed/..."),
            ],
            None,
        )
        .expect("GET");
    let body = resp.json();
    assert_eq!(body["headers"]["spin-path-info"], "/real");
    assert_eq!(body["headers"]["spin-matched-route"], "/wild/...");
}

#[test]
fn service_chaining_to_a_granted_private_component() {
    let t = TestApp::new(
        r#"
spin_manifest_version = 2
[application]
name = "chain"
[[trigger.http]]
route = "/..."
component = "front"
[[trigger.http]]
route = { private = true }
component = "back"
[[trigger.http]]
route = "/public/..."
component = "other"
[component.front]
source = @kitchen_sink@
allowed_outbound_hosts = ["http://back.spin.internal"]
[component.front.variables]
who = "front"
[component.back]
source = @kitchen_sink@
[component.back.variables]
who = "back"
[component.other]
source = @kitchen_sink@
[component.other.variables]
who = "other"
"#,
    );
    let app = t.start();
    let url = enc("http://back.spin.internal/some/path?k=v");
    let body = get_json(&app, &format!("/http?url={url}"));
    assert_eq!(body["ok"]["status"], 200, "chained call failed: {body}");
    let echoed = &body["ok"]["body"];
    assert_eq!(echoed["who"], "back", "{body}");
    assert_eq!(echoed["path"], "/some/path");
    assert_eq!(echoed["query"], "k=v");
    assert_eq!(echoed["headers"]["x-kitchen-sink"], "outbound");
    // As Spin's synthetic route match for chained requests.
    let h = &echoed["headers"];
    assert_eq!(h["spin-path-info"], "/some/path", "{body}");
    assert_eq!(h["spin-matched-route"], "/...", "{body}");
    assert_eq!(h["spin-raw-component-route"], "/...", "{body}");
    assert_eq!(h["spin-component-route"], "", "{body}");
    assert_eq!(h["spin-client-addr"], "0.0.0.0:0", "{body}");
    assert!(
        h.get("host")
            .is_none_or(|v| !v.as_str().unwrap_or("").ends_with(".spin.internal")),
        "the service-chaining Host header must not reach the guest: {body}"
    );

    // POST with a body through the chain.
    let url = enc("http://back.spin.internal/posted");
    let body = post_json(
        &app,
        &format!("/http?method=POST&url={url}"),
        "chained body",
    );
    assert_eq!(body["ok"]["body"]["method"], "POST");
    assert_eq!(body["ok"]["body"]["body"], "chained body");

    // `other` is a real component but front was not granted it.
    let url = enc("http://other.spin.internal/public/x");
    let body = get_json(&app, &format!("/http?url={url}"));
    assert_eq!(body["error"], "HttpRequestDenied", "{body}");

    // The private component is not reachable from outside.
    let resp = app.get("/some/path").expect("GET");
    assert_eq!(
        resp.json()["who"],
        "front",
        "/... belongs to front, never to back"
    );
}

#[test]
fn service_chaining_wildcard_grant_and_unknown_component() {
    let t = TestApp::new(
        r#"
spin_manifest_version = 2
[application]
name = "chain-wildcard"
[[trigger.http]]
route = "/..."
component = "front"
[[trigger.http]]
route = "/b/..."
component = "b"
[component.front]
source = @kitchen_sink@
allowed_outbound_hosts = ["http://*.spin.internal"]
[component.front.variables]
who = "front"
[component.b]
source = @kitchen_sink@
[component.b.variables]
who = "b"
"#,
    );
    let app = t.start();
    let body = get_json(
        &app,
        &format!("/http?url={}", enc("http://b.spin.internal/b/hi")),
    );
    assert_eq!(body["ok"]["status"], 200, "{body}");
    assert_eq!(body["ok"]["body"]["who"], "b");
    assert_eq!(body["ok"]["body"]["path"], "/b/hi");

    // No component `ghost`: an error, never a hang or a trap.
    let body = get_json(
        &app,
        &format!("/http?url={}", enc("http://ghost.spin.internal/")),
    );
    assert!(
        body.get("error").is_some() || body["ok"]["status"] == 404,
        "calling a missing component should fail: {body}"
    );
}

#[test]
fn outbound_http_denied_without_grant() {
    let t = TestApp::new(
        r#"
spin_manifest_version = 2
[application]
name = "denied"
[[trigger.http]]
route = "/..."
component = "nogrant"
[[trigger.http]]
route = "/target/..."
component = "target"
[component.nogrant]
source = @kitchen_sink@
[component.target]
source = @kitchen_sink@
"#,
    );
    let app = t.start();
    // A real, reachable HTTP server: the denial must come from the grant.
    let server = TinyHttpServer::start("should-not-see-this");
    let real = format!("http://127.0.0.1:{}/x", server.port);
    let body = get_json(&app, &format!("/http?url={}", enc(&real)));
    assert_eq!(body["error"], "HttpRequestDenied", "{body}");
    assert_eq!(
        server.hits(),
        0,
        "the denied request must never leave the host"
    );
    let body = get_json(
        &app,
        &format!("/http?url={}", enc("http://target.spin.internal/target/x")),
    );
    assert_eq!(body["error"], "HttpRequestDenied", "{body}");
}

#[test]
fn outbound_http_to_a_granted_host() {
    let granted = TinyHttpServer::start("granted-answer");
    let other = TinyHttpServer::start("other-answer");
    let t = TestApp::new(&format!(
        r#"
spin_manifest_version = 2
[application]
name = "granted"
[[trigger.http]]
route = "/..."
component = "front"
[component.front]
source = @kitchen_sink@
allowed_outbound_hosts = ["http://127.0.0.1:{}"]
"#,
        granted.port
    ));
    let app = t.start();
    let url = format!("http://127.0.0.1:{}/x", granted.port);
    let body = get_json(&app, &format!("/http?url={}", enc(&url)));
    assert_eq!(body["ok"]["status"], 200, "{body}");
    assert_eq!(body["ok"]["body"], "granted-answer");
    // Same host, another port: not granted, even though a server answers there.
    let url = format!("http://127.0.0.1:{}/x", other.port);
    let body = get_json(&app, &format!("/http?url={}", enc(&url)));
    assert_eq!(body["error"], "HttpRequestDenied", "{body}");
    assert_eq!(
        other.hits(),
        0,
        "the denied request must never leave the host"
    );
}

#[test]
fn one_log_line_per_request() {
    let t = TestApp::new(ROUTES);
    let app = t.start();
    let resp = app.get("/wild/logged-path-123").expect("GET");
    assert_eq!(resp.status, 200);
    let found = app.wait_for_log(std::time::Duration::from_secs(5), |log| {
        log.lines().any(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let has = |w: &str| words.iter().any(|x| x.trim_matches(['"', ',', ':']) == w);
            has("GET")
                && has("/wild/logged-path-123")
                && has("b")
                && has("200")
                && words.iter().any(|w| is_duration(w))
        })
    });
    assert!(
        found,
        "no log line with method, path, component, status and duration for the request:\nstdout:\n{}\nstderr:\n{}",
        app.stdout(),
        app.stderr()
    );
    let all = format!("{}{}", app.stdout(), app.stderr());
    let lines = all
        .lines()
        .filter(|l| l.contains("/wild/logged-path-123"))
        .count();
    assert_eq!(lines, 1, "one request, one log line:\n{all}");
    let resp = app.get("/not-routed-456").expect("GET");
    assert_eq!(resp.status, 404);
    let found = app.wait_for_log(std::time::Duration::from_secs(5), |log| {
        log.lines()
            .any(|l| l.contains("/not-routed-456") && l.contains("404"))
    });
    assert!(found, "no log line for the 404:\n{}", app.stderr());
}

#[test]
fn concurrent_requests_are_isolated() {
    let t = TestApp::new(ROUTES);
    let app = t.start();
    let base = app.base_url.clone();
    let handles: Vec<_> = (0..16)
        .map(|i| {
            let base = base.clone();
            std::thread::spawn(move || {
                let path = format!("/wild/req-{i}");
                let r = testkit::request(
                    "POST",
                    &format!("{base}{path}"),
                    &[],
                    Some(format!("body-{i}").as_bytes()),
                )
                .expect("request");
                assert_eq!(r.status, 200);
                let body = r.json();
                assert_eq!(body["path"], path);
                assert_eq!(body["body"], format!("body-{i}"));
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread");
    }
}

const SINK: &str = r#"
spin_manifest_version = 2
[application]
name = "sink"
[[trigger.http]]
route = "/..."
component = "ks"
[[trigger.http]]
route = "/users/:id/..."
component = "users"
[component.ks]
source = @kitchen_sink@
[component.users]
source = @kitchen_sink@
[component.users.variables]
who = "users"
"#;

#[test]
fn fresh_instance_per_request() {
    let t = TestApp::new(SINK);
    let app = t.start();
    for _ in 0..5 {
        let body = get_json(&app, "/instance-counter");
        assert_eq!(
            body["ok"], 1,
            "guest state leaked from an earlier request: {body}"
        );
    }
}

#[test]
fn status_headers_and_body_pass_through() {
    let t = TestApp::new(SINK);
    let app = t.start();
    let resp = app
        .get("/status?code=418&header=teapot&body=short%20and%20stout")
        .unwrap();
    assert_eq!(resp.status, 418);
    assert_eq!(resp.header("x-kitchen-sink"), Some("teapot"));
    assert_eq!(resp.text(), "short and stout");
    let resp = app.get("/status?code=204").unwrap();
    assert_eq!(resp.status, 204);
    assert!(resp.body.is_empty());
}

#[test]
fn large_request_body_arrives_whole() {
    let t = TestApp::new(SINK);
    let app = t.start();
    let body: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let sum: u64 = body.iter().map(|b| *b as u64).sum();
    let resp = app.send("POST", "/body-len", &[], Some(&body)).unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.json(), json!({ "len": body.len(), "sum": sum }));
}

#[test]
fn component_output_goes_to_the_host_stderr() {
    let t = TestApp::new(SINK);
    let app = t.start();
    assert_eq!(get_json(&app, "/print?msg=marker-7781")["ok"], true);
    let seen = app.wait_for_log(std::time::Duration::from_secs(5), |_| {
        let err = app.stderr();
        err.contains("kitchen-sink stdout: marker-7781")
            && err.contains("kitchen-sink stderr: marker-7781")
    });
    assert!(
        seen,
        "component stdout and stderr should reach the host's stderr:\nstdout:\n{}\nstderr:\n{}",
        app.stdout(),
        app.stderr()
    );
}

#[test]
fn a_trap_is_a_500_and_the_host_keeps_serving() {
    let t = TestApp::new(SINK);
    let app = t.start();
    let resp = app.get("/trap").unwrap();
    assert_eq!(resp.status, 500, "{}", resp.text());
    assert_eq!(get_json(&app, "/instance-counter")["ok"], 1);
}

#[test]
fn named_wildcards_become_spin_path_match_headers() {
    let t = TestApp::new(SINK);
    let app = t.start();
    let body = get_json(&app, "/users/42/orders/7");
    assert_eq!(body["who"], "users", "{body}");
    let h = &body["headers"];
    assert_eq!(h["spin-path-match-id"], "42", "{body}");
    assert_eq!(h["spin-path-info"], "/orders/7", "{body}");
    assert_eq!(h["spin-matched-route"], "/users/:id/...", "{body}");
    assert_eq!(h["spin-component-route"], "/users/:id", "{body}");
}

/// A duration token of a log line: digits with a unit (`1.2ms`, `350us`, `350µs`, `0.01s`).
fn is_duration(word: &str) -> bool {
    let w = word.trim_matches(['(', ')', ',', '"']);
    let number = ["ms", "us", "µs", "ns", "s"]
        .iter()
        .find_map(|unit| w.strip_suffix(unit));
    number.is_some_and(|n| !n.is_empty() && n.parse::<f64>().is_ok())
}

#[test]
fn self_requests_need_the_self_grant() {
    // As Spin: a relative URL or `http://self.alt/...` is a request to this app, allowed by
    // `http://self` in allowed_outbound_hosts.
    let t = TestApp::new(
        r#"
spin_manifest_version = 2
[application]
name = "self"
[[trigger.http]]
route = "/..."
component = "front"
[[trigger.http]]
route = "/nogrant/..."
component = "nogrant"
[[trigger.http]]
route = "/target/..."
component = "target"
[component.front]
source = @kitchen_sink@
allowed_outbound_hosts = ["http://self"]
[component.nogrant]
source = @kitchen_sink@
[component.target]
source = @kitchen_sink@
[component.target.variables]
who = "target"
"#,
    );
    let app = t.start();
    for url in ["http://self.alt/target/abc", "/target/abc"] {
        let body = get_json(&app, &format!("/http?url={}", enc(url)));
        assert_eq!(body["ok"]["status"], 200, "{url}: {body}");
        assert_eq!(body["ok"]["body"]["who"], "target", "{url}: {body}");
        assert_eq!(body["ok"]["body"]["path"], "/target/abc", "{url}: {body}");
        let body = get_json(&app, &format!("/nogrant/http?url={}", enc(url)));
        assert_eq!(body["error"], "HttpRequestDenied", "{url}: {body}");
    }
}

#[test]
fn outbound_http_grant_schemes_ports_and_connection_errors() {
    let server = TinyHttpServer::start("wildcard-port");
    let closed = testkit::free_port();
    let t = TestApp::new(&format!(
        r#"
spin_manifest_version = 2
[application]
name = "schemes"
[[trigger.http]]
route = "/..."
component = "anyport"
[[trigger.http]]
route = "/tls/..."
component = "tlsonly"
[component.anyport]
source = @kitchen_sink@
allowed_outbound_hosts = ["http://127.0.0.1:*"]
[component.tlsonly]
source = @kitchen_sink@
allowed_outbound_hosts = ["https://127.0.0.1:{port}"]
"#,
        port = server.port
    ));
    let app = t.start();
    let url = format!("http://127.0.0.1:{}/", server.port);
    let body = get_json(&app, &format!("/http?url={}", enc(&url)));
    assert_eq!(body["ok"]["body"], "wildcard-port", "{body}");
    // Granted, but nothing listens there: a connection error, not a denial.
    let url = format!("http://127.0.0.1:{closed}/");
    let body = get_json(&app, &format!("/http?url={}", enc(&url)));
    assert_eq!(body["error"], "ConnectionRefused", "{body}");
    // An https grant does not allow plain http to the same host and port.
    let hits = server.hits();
    let url = format!("http://127.0.0.1:{}/", server.port);
    let body = get_json(&app, &format!("/tls/http?url={}", enc(&url)));
    assert_eq!(body["error"], "HttpRequestDenied", "{body}");
    assert_eq!(server.hits(), hits, "the denied request reached the server");
}

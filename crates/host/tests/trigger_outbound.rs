//! Outbound HTTP depends on the trigger that runs the instance, as in Spin, where only the HTTP
//! trigger sets a self-request origin and the service-chaining interceptor.
//!
//! One cron-ticker component (`ticker`) runs on the HTTP, cron and Redis triggers, granted
//! `*://*:*` (which is not a service-chaining grant, so Spin starts it on every trigger), and
//! probes a relative URL and `http://ks.spin.internal/...` from each handler. From HTTP both are
//! served (self-request, in-process chaining to the kitchen-sink `ks`); from cron and Redis the
//! relative URL fails with `HttpRequestUriInvalid` (no origin) and the spin.internal URL goes to
//! the network, where the name does not resolve: `ks` never sees those requests.

mod common;

use std::time::Duration;

use common::*;

/// `ticker` on all three triggers with `grant`; its cron runs probe `probes`.
fn app(redis: &RedisServer, grant: &str, probes: &str) -> TestApp {
    TestApp::new(&format!(
        r#"
spin_manifest_version = 2
[application]
name = "trigger-outbound"
[application.trigger.redis]
address = "{url}"

[[trigger.http]]
route = "/ticker/..."
component = "ticker"
[[trigger.http]]
route = "/..."
component = "ks"
[[trigger.cron]]
component = "ticker"
cron_expression = "* * * * * *"
[[trigger.redis]]
channel = "probes"
component = "ticker"

[component.ticker]
source = @cron_ticker@
allowed_outbound_hosts = ["{url}", "{grant}"]
[component.ticker.variables]
redis_url = "{url}"
list = "outcomes"
probe_urls = "{probes}"

[component.ks]
source = @kitchen_sink@
"#,
        url = redis.url()
    ))
}

/// Publishes a probe of each URL to the Redis-triggered handler.
fn publish_probes(redis: &RedisServer, app: &SpinApp, urls: &[&str]) {
    assert!(
        wait_subscribers(redis.port(), "probes", 1, Duration::from_secs(15)),
        "the Redis trigger did not subscribe:\n{}",
        app.stderr()
    );
    for url in urls {
        redis
            .cli(&["PUBLISH", "probes", &format!("probe {url}")])
            .expect("PUBLISH");
    }
}

/// Waits for the recorded outcome of `trigger` probing `url`.
fn outcome(redis: &RedisServer, trigger: &str, url: &str) -> String {
    let prefix = format!("probe {trigger} {url} => ");
    eventually(Duration::from_secs(20), &prefix, || {
        lrange(redis, "outcomes")
            .iter()
            .find_map(|e| e.strip_prefix(&prefix).map(str::to_owned))
    })
}

/// The HTTP handler's probe of `url`.
fn http_probe(app: &SpinApp, url: &str) -> String {
    let resp = app.get(&format!("/ticker/probe?url={url}")).expect("GET");
    assert_eq!(resp.status, 200, "{}\n{}", resp.text(), app.stderr());
    resp.text()
}

#[test]
fn only_the_http_trigger_self_requests_and_chains() {
    let redis = RedisServer::start().expect("redis");
    let t = app(
        &redis,
        "*://*:*",
        "/from-cron-self,http://ks.spin.internal/from-cron-chained",
    );
    let app = t.start();

    // The HTTP-triggered instance: a self-request and an in-process chained request, both served
    // by `ks`, which echoes the path.
    for path in [
        "/from-http-self",
        "http://ks.spin.internal/from-http-chained",
    ] {
        let got = http_probe(&app, path);
        assert!(got.starts_with("ok 200 "), "HTTP probe of {path}: {got}");
        assert!(got.contains("/from-http-"), "HTTP probe of {path}: {got}");
    }

    publish_probes(
        &redis,
        &app,
        &[
            "/from-redis-self",
            "http://ks.spin.internal/from-redis-chained",
        ],
    );
    for trigger in ["cron", "redis"] {
        let relative = outcome(&redis, trigger, &format!("/from-{trigger}-self"));
        assert_eq!(relative, "error HttpRequestUriInvalid", "{trigger}");
        let chained = format!("http://ks.spin.internal/from-{trigger}-chained");
        let got = outcome(&redis, trigger, &chained);
        eprintln!("{trigger}: {chained} => {got}");
        assert!(
            got.starts_with("error DnsError") || got.starts_with("error Connection"),
            "{trigger}: {chained} must go to the network and fail there, got {got}"
        );
    }

    // `ks` served the HTTP-triggered probes and nothing else.
    let log = app.stdout();
    for seen in ["/from-http-self", "/from-http-chained"] {
        assert!(
            log.contains(seen),
            "{seen} missing from the request log:\n{log}"
        );
    }
    for unseen in ["/from-cron-", "/from-redis-"] {
        assert!(
            !log.contains(unseen),
            "a {unseen} request was dispatched:\n{log}"
        );
    }
}

#[test]
fn without_a_grant_every_trigger_is_denied() {
    let redis = RedisServer::start().expect("redis");
    // A grant for some other host only.
    let t = app(
        &redis,
        "https://example.com",
        "/from-cron-self,http://ks.spin.internal/from-cron-chained",
    );
    let app = t.start();
    for path in [
        "/from-http-self",
        "http://ks.spin.internal/from-http-chained",
    ] {
        assert_eq!(http_probe(&app, path), "error HttpRequestDenied", "{path}");
    }
    publish_probes(
        &redis,
        &app,
        &[
            "/from-redis-self",
            "http://ks.spin.internal/from-redis-chained",
        ],
    );
    for trigger in ["cron", "redis"] {
        for url in [
            format!("/from-{trigger}-self"),
            format!("http://ks.spin.internal/from-{trigger}-chained"),
        ] {
            assert_eq!(
                outcome(&redis, trigger, &url),
                "error HttpRequestDenied",
                "{trigger} {url}"
            );
        }
    }
    assert!(
        !app.stdout().contains("/from-"),
        "a denied request was dispatched:\n{}",
        app.stdout()
    );
}

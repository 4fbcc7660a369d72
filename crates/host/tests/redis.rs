//! Outbound Redis (every operation, `execute` returning every RedisResult kind, Lua via EVAL and
//! EVALSHA) and the Redis trigger (delivery, templated address and channel, a failing or
//! trapping handler does not end the subscription, reconnect after the server restarts).

mod common;

use std::time::Duration;

use common::*;

fn outbound_app(redis: &RedisServer) -> TestApp {
    TestApp::new(&format!(
        r#"
spin_manifest_version = 2
[application]
name = "outbound-redis"
[[trigger.http]]
route = "/..."
component = "ks"
[component.ks]
source = @kitchen_sink@
allowed_outbound_hosts = ["{url}"]
"#,
        url = redis.url()
    ))
}

#[test]
fn outbound_redis_every_operation() {
    let redis = RedisServer::start().expect("redis");
    let t = outbound_app(&redis);
    let app = t.start();
    let body = get_json(
        &app,
        &format!("/redis/roundtrip?url={}&prefix=rt", enc(&redis.url())),
    );
    let expect = |k: &str, v: Value| assert_eq!(body[k], v, "{k}: {body}");
    expect("open", json!({ "ok": true }));
    expect("publish", json!({ "ok": null }));
    expect("set", json!({ "ok": null }));
    expect("get", json!({ "ok": "v1" }));
    expect("get_missing", json!({ "ok": null }));
    expect("incr", json!({ "ok": 1 }));
    expect("incr_again", json!({ "ok": 2 }));
    expect("sadd", json!({ "ok": 3 }));
    expect("sadd_again", json!({ "ok": 0 }));
    expect("srem", json!({ "ok": 1 }));
    expect("smembers", json!({ "ok": ["a", "c"] }));
    expect("del", json!({ "ok": 2 }));
    expect("get_after_del", json!({ "ok": null }));
    assert!(
        body["incr_wrong_type"].get("error").is_some(),
        "INCR on a string must fail: {body}"
    );
}

#[test]
fn outbound_redis_execute_every_result_kind_and_lua() {
    let redis = RedisServer::start().expect("redis");
    let t = outbound_app(&redis);
    let app = t.start();
    let body = get_json(
        &app,
        &format!("/redis/roundtrip?url={}&prefix=lua", enc(&redis.url())),
    );
    let expect = |k: &str, v: Value| assert_eq!(body[k], v, "{k}: {body}");
    expect("eval_nil", json!({ "ok": ["nil"] }));
    expect("eval_status", json!({ "ok": [{ "status": "FINE" }] }));
    expect("eval_int", json!({ "ok": [{ "int64": 5 }] }));
    expect("eval_binary", json!({ "ok": [{ "binary": "bytes\u{1}" }] }));
    expect(
        "eval_array",
        json!({ "ok": [{ "int64": 1 }, { "binary": "two" }, { "int64": 3 }] }),
    );
    expect("evalsha", json!({ "ok": [{ "binary": "from-sha" }] }));
    expect("execute_set", json!({ "ok": [{ "status": "OK" }] }));
    assert!(
        body["eval_error"].get("error").is_some(),
        "a Lua error_reply must be an error: {body}"
    );
}

#[test]
fn lua_reservation_is_atomic_under_concurrency() {
    // The stock function's pattern: check-and-decrement in one Lua script.
    let redis = RedisServer::start().expect("redis");
    redis.cli(&["SET", "stock:sku-1", "10"]).unwrap();
    let t = outbound_app(&redis);
    let app = t.start();
    let script = "local s = tonumber(redis.call('GET', KEYS[1])) \
                  if s >= tonumber(ARGV[1]) then return redis.call('DECRBY', KEYS[1], ARGV[1]) \
                  else return -1 end";
    let path = format!(
        "/redis/execute?url={}&arg=EVAL&arg={}&arg=1&arg=stock:sku-1&arg=3",
        enc(&redis.url()),
        enc(script)
    );
    let base = app.base_url.clone();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let url = format!("{base}{path}");
            std::thread::spawn(move || {
                let r = testkit::request("GET", &url, &[], None).expect("request");
                let body = r.json();
                body["ok"][0]["int64"]
                    .as_i64()
                    .unwrap_or_else(|| panic!("EVAL failed: {body}"))
            })
        })
        .collect();
    let mut results: Vec<i64> = threads.into_iter().map(|h| h.join().unwrap()).collect();
    results.sort();
    assert_eq!(
        results,
        vec![-1, -1, -1, -1, -1, 1, 4, 7],
        "exactly 3 reservations of 3 from 10"
    );
    assert_eq!(redis.cli(&["GET", "stock:sku-1"]).unwrap(), "1");
}

fn trigger_app(redis_host: &str) -> TestApp {
    TestApp::new(&format!(
        r#"
spin_manifest_version = 2
[application]
name = "redis-trigger"

[application.trigger.redis]
address = "redis://{{{{ redis_host }}}}"

[variables]
redis_host = {{ default = "{redis_host}" }}
events_channel = {{ default = "events" }}

[[trigger.redis]]
channel = "{{{{ events_channel }}}}"
component = "listener"

[[trigger.redis]]
channel = "other-events"
component = "other"

[[trigger.http]]
route = "/..."
component = "ks"

[component.listener]
source = @redis_listener@
allowed_outbound_hosts = ["redis://{{{{ redis_host }}}}"]
[component.listener.variables]
redis_url = "redis://{{{{ redis_host }}}}"
list = "received"

[component.other]
source = @redis_listener@
allowed_outbound_hosts = ["redis://{{{{ redis_host }}}}"]
[component.other.variables]
redis_url = "redis://{{{{ redis_host }}}}"
list = "other-received"

[component.ks]
source = @kitchen_sink@
allowed_outbound_hosts = ["redis://{{{{ redis_host }}}}"]
"#
    ))
}

#[test]
fn redis_trigger_delivers_and_survives_failing_handlers() {
    let redis = RedisServer::start().expect("redis");
    let t = trigger_app(&redis.host());
    let app = t.start();
    assert!(
        wait_subscribers(redis.port(), "events", 1, Duration::from_secs(15)),
        "the host never subscribed to `events`:\n{}",
        app.stderr()
    );
    for msg in ["m1", "fail", "m2", "trap", "m3"] {
        redis.cli(&["PUBLISH", "events", msg]).unwrap();
        // One at a time, so the recorded order is the publish order.
        eventually(
            Duration::from_secs(10),
            &format!("delivery of {msg}"),
            || {
                lrange(&redis, "received")
                    .contains(&msg.to_owned())
                    .then_some(())
            },
        );
    }
    assert_eq!(
        lrange(&redis, "received"),
        ["m1", "fail", "m2", "trap", "m3"]
    );
    assert!(
        lrange(&redis, "other-received").is_empty(),
        "wrong channel routing"
    );
    assert!(
        app.wait_for_log(Duration::from_secs(5), |l| l.contains("asked to fail")),
        "the failing handler's error is not in the host log:\n{}",
        app.stderr()
    );
    // The HTTP trigger still serves.
    assert_eq!(app.get("/anything").unwrap().status, 200);

    // A message published by a component (outbound publish) reaches the trigger too.
    let body = get_json(
        &app,
        &format!(
            "/redis/publish?url={}&channel=other-events&payload=from-component",
            enc(&redis.url())
        ),
    );
    assert_eq!(body["ok"], true, "{body}");
    eventually(Duration::from_secs(10), "delivery on other-events", || {
        (lrange(&redis, "other-received") == ["from-component"]).then_some(())
    });
}

#[test]
fn redis_trigger_binary_payload_is_delivered_intact() {
    let redis = RedisServer::start().expect("redis");
    let t = trigger_app(&redis.host());
    let app = t.start();
    assert!(
        wait_subscribers(redis.port(), "events", 1, Duration::from_secs(15)),
        "{}",
        app.stderr()
    );
    let payload = "ünïcode and spaces \t tab";
    redis.cli(&["PUBLISH", "events", payload]).unwrap();
    eventually(Duration::from_secs(10), "delivery", || {
        (lrange(&redis, "received") == [payload]).then_some(())
    });
}

#[test]
fn redis_trigger_channel_from_environment_variable() {
    let redis = RedisServer::start().expect("redis");
    let t = trigger_app(&redis.host());
    let app = t
        .builder()
        .variable("events_channel", "renamed-channel")
        .start()
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        wait_subscribers(redis.port(), "renamed-channel", 1, Duration::from_secs(15)),
        "SPIN_VARIABLE_EVENTS_CHANNEL was not used for the channel:\n{}",
        app.stderr()
    );
    redis.cli(&["PUBLISH", "renamed-channel", "env"]).unwrap();
    eventually(Duration::from_secs(10), "delivery", || {
        (lrange(&redis, "received") == ["env"]).then_some(())
    });
}

#[test]
fn redis_trigger_reconnects_after_redis_restarts() {
    let port = testkit::free_port();
    let redis = RedisServer::start_on(port).expect("redis-server on a fixed port");
    let t = trigger_app(&format!("127.0.0.1:{port}"));
    let app = t.start();
    assert!(
        wait_subscribers(port, "events", 1, Duration::from_secs(15)),
        "{}",
        app.stderr()
    );
    redis.cli(&["PUBLISH", "events", "before"]).unwrap();
    eventually(
        Duration::from_secs(10),
        "delivery before the restart",
        || {
            (redis
                .cli(&["LRANGE", "received", "0", "-1"])
                .ok()
                .as_deref()
                == Some("before"))
            .then_some(())
        },
    );

    drop(redis);
    std::thread::sleep(Duration::from_secs(2));
    let redis = RedisServer::start_on(port).expect("redis-server on a fixed port");
    let resubscribed = wait_subscribers(port, "events", 1, Duration::from_secs(30));
    assert!(
        resubscribed,
        "the Redis trigger did not resubscribe within 30s after the server restarted:\n{}",
        app.stderr()
    );
    redis.cli(&["PUBLISH", "events", "after"]).unwrap();
    let delivered = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        redis
            .cli(&["LRANGE", "received", "0", "-1"])
            .ok()
            .as_deref()
            == Some("after")
    });
    assert!(
        delivered,
        "a message published after the restart was not handled (LRANGE received = {:?}):\n{}",
        redis.cli(&["LRANGE", "received", "0", "-1"]),
        app.stderr()
    );
}

#[test]
fn outbound_redis_unreachable_is_an_error_not_a_hang() {
    let closed = testkit::free_port();
    let url = format!("redis://127.0.0.1:{closed}");
    let t = TestApp::new(&format!(
        r#"
spin_manifest_version = 2
[application]
name = "unreachable"
[[trigger.http]]
route = "/..."
component = "ks"
[component.ks]
source = @kitchen_sink@
allowed_outbound_hosts = ["{url}"]
"#
    ));
    let app = t.start();
    let started = std::time::Instant::now();
    let body = get_json(&app, &format!("/redis/roundtrip?url={}", enc(&url)));
    assert_eq!(body["open"]["error"], "other", "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "connecting to a closed port took {:?}",
        started.elapsed()
    );
}

#[test]
fn outbound_redis_recovers_after_redis_restarts() {
    // Connections may be reused across requests, but a restarted server must not be observable
    // beyond the requests that were in flight: the first request after the restart succeeds.
    let port = testkit::free_port();
    let redis = RedisServer::start_on(port).expect("redis-server on a fixed port");
    let url = format!("redis://127.0.0.1:{port}");
    let t = TestApp::new(&format!(
        r#"
spin_manifest_version = 2
[application]
name = "outbound-restart"
[[trigger.http]]
route = "/..."
component = "ks"
[component.ks]
source = @kitchen_sink@
allowed_outbound_hosts = ["{url}"]
"#
    ));
    let app = t.start();
    let exec = |args: &str| get_json(&app, &format!("/redis/execute?url={}&{args}", enc(&url)));
    assert_eq!(
        exec("arg=SET&arg=k&arg=before")["ok"],
        json!([{ "status": "OK" }])
    );
    drop(redis);
    std::thread::sleep(Duration::from_millis(500));
    let redis = RedisServer::start_on(port).expect("redis-server on a fixed port");
    let body = exec("arg=SET&arg=k&arg=after");
    assert_eq!(
        body["ok"],
        json!([{ "status": "OK" }]),
        "first request after the Redis restart failed: {body}"
    );
    assert_eq!(redis.cli(&["GET", "k"]).unwrap(), "after");
}

#[test]
fn redis_trigger_burst_and_two_components_on_one_channel() {
    let redis = RedisServer::start().expect("redis");
    let url = redis.url();
    let t = TestApp::new(&format!(
        r#"
spin_manifest_version = 2
[application]
name = "fan-out"
[application.trigger.redis]
address = "{url}"
[[trigger.redis]]
channel = "burst"
component = "first"
[[trigger.redis]]
channel = "burst"
component = "second"
[component.first]
source = @redis_listener@
allowed_outbound_hosts = ["{url}"]
[component.first.variables]
redis_url = "{url}"
list = "first"
[component.second]
source = @redis_listener@
allowed_outbound_hosts = ["{url}"]
[component.second.variables]
redis_url = "{url}"
list = "second"
"#
    ));
    let app = t.start();
    assert!(
        wait_subscribers(redis.port(), "burst", 1, Duration::from_secs(15)),
        "{}",
        app.stderr()
    );
    let sent: Vec<String> = (0..50).map(|i| format!("msg-{i:02}")).collect();
    for m in &sent {
        redis.cli(&["PUBLISH", "burst", m]).unwrap();
    }
    for list in ["first", "second"] {
        let got = eventually(
            Duration::from_secs(20),
            &format!("50 messages in {list}"),
            || {
                let got = lrange(&redis, list);
                (got.len() >= 50).then_some(got)
            },
        );
        let mut sorted = got.clone();
        sorted.sort();
        assert_eq!(sorted, sent, "{list} got each message exactly once");
    }
}

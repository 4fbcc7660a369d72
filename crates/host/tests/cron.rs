//! Cron trigger: 6-field expressions with seconds, `handle-cron-event` called with the Unix
//! timestamp in seconds (as the spin-trigger-cron plugin does), and every tick spawned as the
//! plugin does, so the runs of a slow handler overlap instead of delaying the next tick.
//! The cron-ticker component records `start:<timestamp>:<unix ms>` and `end:...` in Redis.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;

fn app(redis: &RedisServer, expression: &str, busy_ms: u64) -> TestApp {
    TestApp::new(&format!(
        r#"
spin_manifest_version = 2
[application]
name = "cron"

[[trigger.cron]]
component = "ticker"
cron_expression = "{expression}"

[[trigger.http]]
route = "/..."
component = "ks"

[component.ticker]
source = @cron_ticker@
allowed_outbound_hosts = ["{url}"]
[component.ticker.variables]
redis_url = "{url}"
list = "ticks"
busy_ms = "{busy_ms}"

[component.ks]
source = @kitchen_sink@
"#,
        url = redis.url()
    ))
}

struct Entry {
    kind: String,
    timestamp: u64,
    at_ms: u128,
}

fn entries(redis: &RedisServer) -> Vec<Entry> {
    lrange(redis, "ticks")
        .iter()
        .map(|line| {
            let mut parts = line.split(':');
            let kind = parts.next().unwrap_or_default().to_owned();
            let timestamp = parts.next().and_then(|p| p.parse().ok()).expect(line);
            let at_ms = parts.next().and_then(|p| p.parse().ok()).expect(line);
            Entry {
                kind,
                timestamp,
                at_ms,
            }
        })
        .collect()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn cron_fires_every_second_with_a_seconds_timestamp() {
    let redis = RedisServer::start().expect("redis");
    let t = app(&redis, "* * * * * *", 0);
    let started = now_secs();
    let app = t.start();
    eventually(Duration::from_secs(15), "3 completed cron runs", || {
        (entries(&redis).iter().filter(|e| e.kind == "end").count() >= 3).then_some(())
    });
    let ends: Vec<Entry> = entries(&redis)
        .into_iter()
        .filter(|e| e.kind == "end")
        .collect();
    for e in &ends {
        assert!(
            e.timestamp >= started.saturating_sub(2) && e.timestamp <= now_secs() + 1,
            "timestamp {} is not the Unix time in seconds (started at {started})",
            e.timestamp
        );
    }
    let distinct: std::collections::BTreeSet<u64> = ends.iter().map(|e| e.timestamp).collect();
    assert!(
        distinct.len() >= 3,
        "every-second runs should carry distinct timestamps, got {:?}",
        ends.iter().map(|e| e.timestamp).collect::<Vec<_>>()
    );
    drop(app);
}

#[test]
fn cron_every_two_seconds_does_not_fire_every_second() {
    let redis = RedisServer::start().expect("redis");
    let t = app(&redis, "*/2 * * * * *", 0);
    let app = t.start();
    std::thread::sleep(Duration::from_millis(7_500));
    let starts: Vec<u64> = entries(&redis)
        .iter()
        .filter(|e| e.kind == "start")
        .map(|e| e.timestamp)
        .collect();
    assert!(
        (3..=4).contains(&starts.len()),
        "*/2 over 7.5s should run 3 or 4 times, ran {} times: {starts:?}\n{}",
        starts.len(),
        app.stderr()
    );
    for s in &starts {
        assert_eq!(s % 2, 0, "*/2 fired on an odd second: {starts:?}");
    }
}

#[test]
fn slow_cron_runs_overlap_like_the_plugin() {
    // Every second, but each run takes 2.5s. The trigger-cron plugin spawns every tick, so a slow
    // run does not hold back the next one: ticks keep coming every second and runs overlap.
    let redis = RedisServer::start().expect("redis");
    let t = app(&redis, "* * * * * *", 2_500);
    let app = t.start();
    eventually(Duration::from_secs(20), "3 completed long runs", || {
        (entries(&redis).iter().filter(|e| e.kind == "end").count() >= 3).then_some(())
    });
    let all = entries(&redis);
    let at = |kind: &str, ts: u64| {
        all.iter()
            .find(|e| e.kind == kind && e.timestamp == ts)
            .map(|e| e.at_ms)
    };
    let mut starts: Vec<u64> = all
        .iter()
        .filter(|e| e.kind == "start")
        .map(|e| e.timestamp)
        .collect();
    starts.sort_unstable();
    let kinds: Vec<String> = all
        .iter()
        .map(|e| format!("{}:{}", e.kind, e.timestamp))
        .collect();
    assert!(starts.len() >= 4, "too few runs started: {kinds:?}");
    assert!(
        starts.windows(2).take(3).all(|w| w[1] == w[0] + 1),
        "a tick was skipped or delayed while a run was busy: {kinds:?}"
    );
    // The first run was still busy when the second and third started.
    let first_end = at("end", starts[0]).expect("the first run ended");
    for next in &starts[1..3] {
        let next_start = at("start", *next).expect("started");
        assert!(
            next_start < first_end,
            "run {next} did not start before run {} ended: {kinds:?}",
            starts[0]
        );
    }
    // And the HTTP trigger is not blocked by the long cron runs.
    let t0 = std::time::Instant::now();
    assert_eq!(app.get("/x").unwrap().status, 200);
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "HTTP waited for the cron run"
    );
}

#[test]
fn cron_handler_error_is_logged_and_next_run_happens() {
    // No `redis_url` grant: every run fails with an error; the trigger keeps going and logs it.
    let redis = RedisServer::start().expect("redis");
    let t = TestApp::new(&format!(
        r#"
spin_manifest_version = 2
[application]
name = "cron-failing"
[[trigger.cron]]
component = "ticker"
cron_expression = "* * * * * *"
[component.ticker]
source = @cron_ticker@
[component.ticker.variables]
redis_url = "{url}"
"#,
        url = redis.url()
    ));
    let app = t.start();
    let logged = app.wait_for_log(Duration::from_secs(10), |l| {
        l.matches("InvalidAddress").count() >= 2
    });
    assert!(
        logged,
        "two failing cron runs should be logged (the error names InvalidAddress):\nstdout:\n{}\nstderr:\n{}",
        app.stdout(),
        app.stderr()
    );
    assert_eq!(redis.cli(&["EXISTS", "ticks"]).unwrap(), "0");
}

#[test]
fn one_component_serves_http_redis_and_cron_triggers() {
    let redis = RedisServer::start().expect("redis");
    let t = TestApp::new(&format!(
        r#"
spin_manifest_version = 2
[application]
name = "triple"

[application.trigger.redis]
address = "{url}"

[[trigger.cron]]
component = "ticker"
cron_expression = "* * * * * *"

[[trigger.redis]]
channel = "ticker-events"
component = "ticker"

[[trigger.http]]
route = "/ticker/..."
component = "ticker"

[component.ticker]
source = @cron_ticker@
allowed_outbound_hosts = ["{url}"]
[component.ticker.variables]
redis_url = "{url}"
list = "ticks"
"#,
        url = redis.url()
    ));
    let app = t.start();
    let resp = app.get("/ticker/hello").unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.text(), "cron-ticker http /ticker/hello");
    assert!(
        wait_subscribers(redis.port(), "ticker-events", 1, Duration::from_secs(15)),
        "{}",
        app.stderr()
    );
    redis.cli(&["PUBLISH", "ticker-events", "ping"]).unwrap();
    eventually(
        Duration::from_secs(10),
        "a cron run and the redis message",
        || {
            let all = lrange(&redis, "ticks");
            (all.contains(&"redis:ping".to_owned()) && all.iter().any(|e| e.starts_with("end:")))
                .then_some(())
        },
    );
}

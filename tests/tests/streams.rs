//! Streams keep what a consumer group has not read (issue 13 §1), and an idle compensator is
//! quiet (§7).
//!
//! Publishing never trims; the compensator trims each stream only below the oldest entry one
//! of its groups has not acknowledged, reports the groups that are behind (a warning per run,
//! `GET /api/ops/streams`), and logs an idle run only as a heartbeat at most once a minute.

use std::time::Duration;

use e2e::{admin_auth, assert_problem, wait_for, Shop};
use serde_json::{json, Value};
use testkit::{repo_root, RedisServer};

const WAIT: Duration = Duration::from_secs(120);

/// `publish.lua` as the outbox runs it.
fn publish_lua() -> String {
    let path = repo_root().join("crates/adapter/lua/publish.lua");
    let script = std::fs::read_to_string(path).expect("publish.lua");
    format!("{script}\nreturn publish(KEYS, ARGV)\n")
}

/// A `PaymentFailed` message as the payment context sends it (the order receiver records it in
/// its inbox and changes nothing else), with id `id`.
fn payment_failed(id: &str) -> String {
    json!({
        "message_id": id,
        "topic": "payments",
        "type": "PaymentFailed",
        "aggregate_id": format!("ord_{id}"),
        "seq": 1,
        "payload": {"order_id": format!("ord_{id}"), "payment_intent_id": format!("pi_{id}"),
                    "amount": 100, "currency": "EUR", "event_id": format!("evt_{id}")},
        "trace_id": null,
        "created_at": "2026-01-01T00:00:00Z",
    })
    .to_string()
}

/// Sends `ids` to the `payments` topic through `publish.lua` (ringing its doorbell), as the
/// outbox does, `per_call` messages per script run, with redis-cli on the Redis at `port`.
fn publish(redis: &RedisServer, ids: &[String], per_call: usize) {
    for chunk in ids.chunks(per_call) {
        let reply = publish_once(redis, chunk);
        assert_eq!(reply[0], chunk.len().to_string(), "{reply:?}");
    }
}

/// One run of `publish.lua` sending `ids` and ringing; its reply `{appended, skipped, rang}`.
fn publish_once(redis: &RedisServer, ids: &[String]) -> Vec<String> {
    let script = publish_lua();
    let envelopes: Vec<String> = ids.iter().map(|id| payment_failed(id)).collect();
    let keys = ["events:payments", "doorbell:marks:payments"];
    let mut args = vec!["EVAL", script.as_str(), "2", keys[0], keys[1]];
    args.extend(["600", "doorbell:payments", "2000", "1"]);
    for (id, env) in ids.iter().zip(&envelopes) {
        args.extend([id.as_str(), env.as_str()]);
    }
    let reply = redis.cli(&args).expect("publish.lua");
    reply.lines().map(str::to_owned).collect()
}

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("msg_{prefix}_{i:05}")).collect()
}

/// The message ids a `drain.lua` call returned (its flat `id, deliveries, envelope` triples).
fn drained(redis: &RedisServer, count: usize) -> Vec<String> {
    drained_by(redis, "g", count, false)
}

/// [`drained`] for consumer group `group`; `last`: the receiver's last read, which deletes the
/// group's doorbell mark.
fn drained_by(redis: &RedisServer, group: &str, count: usize, last: bool) -> Vec<String> {
    let script = std::fs::read_to_string(repo_root().join("crates/adapter/lua/drain.lua"))
        .expect("drain.lua");
    let count = count.to_string();
    let mark = format!("doorbell:pending:payments:{group}");
    let keys = ["events:payments", &mark, "doorbell:marks:payments"];
    let mut cmd = vec!["EVAL", script.as_str(), "3", keys[0], keys[1], keys[2]];
    let last = if last { "1" } else { "0" };
    cmd.extend([group, group, count.as_str(), "30000", last]);
    let reply = redis.cli(&cmd).expect("drain.lua");
    let lines: Vec<&str> = reply.lines().collect();
    let envelopes = lines.chunks(3).filter_map(|t| t.get(2));
    let id = |e: &&str| {
        let env: Value = serde_json::from_str(e).expect("envelope");
        env["message_id"].as_str().expect("message_id").to_owned()
    };
    envelopes.map(id).collect()
}

/// `GET /api/ops/streams` with the admin token: must be 200; its JSON.
fn streams_report(shop: &Shop) -> Value {
    let (k, v) = admin_auth();
    let ops = shop
        .app
        .send("GET", "/api/ops/streams", &[(k, &v)], None)
        .expect("GET");
    assert_eq!(ops.status, 200, "{}", ops.text());
    ops.json()
}

/// The reproduction: a group idle while 350 messages are published, then one drain.
/// With `MAXLEN ~ 50` on publish, the drain delivered only the last 50; now it delivers all.
#[test]
fn publishing_keeps_every_entry_an_idle_group_has_not_read() {
    let redis = RedisServer::start().expect("redis-server");
    assert!(
        drained(&redis, 10).is_empty(),
        "the group is created, empty"
    );
    let sent = ids("idle", 350);
    // One message per script run, as a burst of requests' fast paths sends them.
    publish(&redis, &sent, 1);
    let got = drained(&redis, 1000);
    assert_eq!(
        got.len(),
        350,
        "every entry the group had not read is delivered"
    );
    assert_eq!(got, sent, "in order, none missing");
}

/// The doorbell's pending mark is per consumer group: a group that did its last read is rung
/// for while another group of the topic still holds its mark (is draining), and a ring is
/// coalesced only while every group has one on its way.
#[test]
fn the_doorbell_rings_for_each_consumer_group_on_its_own() {
    let redis = RedisServer::start().expect("redis-server");
    let rang = |ids: &[&str]| {
        let ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
        publish_once(&redis, &ids)[2] == "1"
    };
    let mark = |g: &str| redis.cli(&["EXISTS", &format!("doorbell:pending:payments:{g}")]);
    // Before any group drained, every message rings.
    assert!(rang(&["msg_bell_0"]));
    // Two groups (stock-like and coupon-like) drain and finish: both are rung for.
    for g in ["first", "second"] {
        assert_eq!(drained_by(&redis, g, 10, true), ["msg_bell_0"]);
    }
    assert!(rang(&["msg_bell_1"]), "both marks were clear");
    assert!(!rang(&["msg_bell_2"]), "both groups have a ring on its way");
    // `first` finishes (its last read) while `second` is still draining.
    assert_eq!(drained_by(&redis, "first", 10, true).len(), 2);
    assert_eq!(mark("first").unwrap().trim(), "0");
    assert_eq!(mark("second").unwrap().trim(), "1");
    // The next message rings for `first`, though `second` still holds its mark.
    assert!(rang(&["msg_bell_3"]), "a finished group is rung for");
    assert_eq!(drained_by(&redis, "first", 10, true), ["msg_bell_3"]);
    // `second` reads everything at its last read, and is rung for afterwards.
    assert_eq!(drained_by(&redis, "second", 10, true).len(), 3);
    assert!(rang(&["msg_bell_4"]));
    for g in ["first", "second"] {
        assert_eq!(drained_by(&redis, g, 10, true), ["msg_bell_4"]);
    }
}

/// The group `group` of `stream` in a stream report (`streams` of a run or of the ops route).
fn group<'a>(streams: &'a Value, stream: &str, group: &str) -> &'a Value {
    let s = stream_of(streams, stream);
    let groups = s["groups"].as_array().expect("groups");
    let found = groups.iter().find(|g| g["group"] == group);
    found.unwrap_or_else(|| panic!("no group {group} in {s}"))
}

fn stream_of<'a>(streams: &'a Value, stream: &str) -> &'a Value {
    let all = streams.as_array().expect("streams");
    let found = all.iter().find(|s| s["stream"] == stream);
    found.unwrap_or_else(|| panic!("no {stream} in {streams}"))
}

/// The apps of the 20,000-message test: a lag threshold far below what is sent, and entries
/// trimmed as soon as they are acknowledged (no minimum age).
fn low_threshold(b: testkit::SpinAppBuilder) -> testkit::SpinAppBuilder {
    b.variable("stream_lag_threshold", "100")
        .variable("stream_retention_minutes", "0")
}

/// The sum of the `read` counts the order receiver logged.
fn order_receiver_reads(shop: &Shop) -> u64 {
    let log = shop.app.stderr();
    let reads = log.lines().filter_map(|l| {
        let rest = l.split("order-events: read ").nth(1)?;
        rest.split(' ').next()?.parse::<u64>().ok()
    });
    reads.sum()
}

/// A receiver away (its group created, then the receiver not deployed) while 20,000 messages
/// are sent and the compensator runs with a lag threshold of 100: nothing it has not read is
/// trimmed, the lag is reported and warned about; deployed again, it applies every message
/// once, and only then is the stream trimmed.
#[test]
fn a_receiver_away_while_20000_messages_are_sent_applies_every_one_once() {
    let mut shop = Shop::boot_without_cron_with(low_threshold);
    // The receiver is deployed: it reads (and so creates its group), and what it read is trimmed.
    publish(&shop.redis, &ids("before", 50), 50);
    shop.wait_group_caught_up("events:payments", "order", "msg_before_00049", WAIT);
    let run = shop.compensator_run();
    assert_eq!(
        stream_of(&run["streams"], "events:payments")["trimmed"],
        49,
        "{run}"
    );

    // Taken away, its group stays: 20,000 messages wait for it through compensator runs.
    shop.restart_without_receivers_with(low_threshold);
    let away = ids("away", 20_000);
    publish(&shop.redis, &away, 1000);
    for _ in 0..2 {
        let run = shop.compensator_run();
        let s = stream_of(&run["streams"], "events:payments");
        assert_eq!(
            (s["trimmed"].as_u64(), s["length"].as_u64()),
            (Some(0), Some(20_001)),
            "{s}"
        );
        assert_eq!(
            group(&run["streams"], "events:payments", "order")["lag"],
            20_000
        );
        let warned = run["warnings"].as_array().expect("warnings").iter();
        assert!(warned
            .clone()
            .any(|w| w.as_str().is_some_and(|w| w
                .starts_with("events:payments: group order has 20000 entries not acknowledged"))));
    }
    assert!(shop
        .app
        .stderr()
        .contains("compensator: WARNING events:payments: group order"));
    let ops = streams_report(&shop);
    assert_eq!(ops["lag_threshold"], 100);
    assert_eq!(
        stream_of(&ops["streams"], "events:payments")["behind"],
        true
    );
    let g = group(&ops["streams"], "events:payments", "order");
    assert_eq!(
        (g["lag"].as_u64(), g["pending"].as_u64()),
        (Some(20_000), Some(0)),
        "{g}"
    );
    assert!(g["oldest_unread_age_ms"].is_u64(), "{g}");

    // Deployed again: woken by the next run, it applies every message, each once.
    shop.restart_without_cron_with(low_threshold);
    shop.compensator_run();
    shop.wait_group_caught_up("events:payments", "order", "msg_away_19999", WAIT);
    let applied = shop.sql(
        "SELECT COUNT(*) AS n, COUNT(DISTINCT message_id) AS d FROM inbox \
         WHERE message_id LIKE 'msg_away_%' AND kind = 'PaymentFailed'",
    );
    assert_eq!(applied, vec![json!({"n": 20_000, "d": 20_000})]);
    assert_eq!(order_receiver_reads(&shop), 20_000, "each delivered once");

    // Read and acknowledged: now the run trims it (the last delivered entry stays).
    let run = shop.compensator_run();
    let s = stream_of(&run["streams"], "events:payments");
    assert_eq!(
        (s["trimmed"].as_u64(), s["length"].as_u64()),
        (Some(20_000), Some(1)),
        "{s}"
    );
    assert_eq!(s["behind"], false, "{s}");
    assert_eq!(run["warnings"], json!([]), "{run}");
}

/// Adds `n` entries with ids `1-1`..`1-n` to `stream` (ids fixed so the test can name them).
fn entries(shop: &Shop, stream: &str, n: u32) {
    for i in 1..=n {
        shop.cli(&["XADD", stream, &format!("1-{i}"), "m", "{}"]);
    }
}

/// The stream's report after one compensator run.
fn run_on(shop: &Shop, stream: &str) -> Value {
    let run = shop.compensator_run();
    stream_of(&run["streams"], stream).clone()
}

/// Trimming keeps a stream no group reads yet whole, and of one with groups every entry from
/// the oldest one a group has not acknowledged: a pending entry holds back every later one.
#[test]
fn trimming_keeps_every_entry_a_group_has_not_acknowledged() {
    let shop = Shop::boot_without_receivers();
    let stream = "events:stock";
    entries(&shop, stream, 10);
    let s = run_on(&shop, stream);
    assert_eq!(
        (s["trimmed"].as_u64(), s["length"].as_u64()),
        (Some(0), Some(10)),
        "{s}"
    );
    assert_eq!(s["groups"], json!([]), "no group yet: kept whole");

    // g1 reads 5 and acknowledges 2..5 (1-1 stays pending); g2 reads 8 and acknowledges them.
    for g in ["g1", "g2"] {
        shop.cli(&["XGROUP", "CREATE", stream, g, "0"]);
    }
    shop.cli(&[
        "XREADGROUP",
        "GROUP",
        "g1",
        "c",
        "COUNT",
        "5",
        "STREAMS",
        stream,
        ">",
    ]);
    shop.cli(&["XACK", stream, "g1", "1-2", "1-3", "1-4", "1-5"]);
    shop.cli(&[
        "XREADGROUP",
        "GROUP",
        "g2",
        "c",
        "COUNT",
        "8",
        "STREAMS",
        stream,
        ">",
    ]);
    let acks: Vec<String> = (1..=8).map(|i| format!("1-{i}")).collect();
    let mut ack = vec!["XACK", stream, "g2"];
    ack.extend(acks.iter().map(String::as_str));
    shop.cli(&ack);

    let s = run_on(&shop, stream);
    assert_eq!(
        (s["trimmed"].as_u64(), s["length"].as_u64()),
        (Some(0), Some(10)),
        "{s}"
    );
    let g1 = group(&json!([s]), stream, "g1").clone();
    assert_eq!(
        (g1["lag"].as_u64(), g1["pending"].as_u64()),
        (Some(5), Some(1)),
        "{g1}"
    );
    assert_eq!(g1["unacknowledged"], 6, "{g1}");

    // 1-1 acknowledged: everything below g1's last delivered entry (1-5) goes.
    shop.cli(&["XACK", stream, "g1", "1-1"]);
    let s = run_on(&shop, stream);
    assert_eq!(
        (s["trimmed"].as_u64(), s["length"].as_u64()),
        (Some(4), Some(6)),
        "{s}"
    );
    let first = shop.cli(&["XRANGE", stream, "-", "+", "COUNT", "1"]);
    assert!(first.starts_with("1-5\n"), "{first}");
    // g1 still reads everything it had not read.
    let rest = shop.cli(&["XREADGROUP", "GROUP", "g1", "c", "STREAMS", stream, ">"]);
    let read: Vec<&str> = rest.lines().filter(|l| l.starts_with("1-")).collect();
    assert_eq!(read, ["1-6", "1-7", "1-8", "1-9", "1-10"]);

    // Read and acknowledged, but younger than `stream_retention_minutes` (10 by default): kept.
    let fresh = "events:orders";
    for _ in 0..3 {
        shop.cli(&["XADD", fresh, "*", "m", "{}"]);
    }
    shop.cli(&["XGROUP", "CREATE", fresh, "g", "0"]);
    let read = shop.cli(&["XREADGROUP", "GROUP", "g", "c", "STREAMS", fresh, ">"]);
    let is_id = |l: &&str| {
        l.split_once('-')
            .is_some_and(|(a, b)| a.parse::<u64>().is_ok() && b.parse::<u64>().is_ok())
    };
    let ids: Vec<&str> = read.lines().filter(is_id).collect();
    assert_eq!(ids.len(), 3, "{read}");
    let mut ack = vec!["XACK", fresh, "g"];
    ack.extend(ids);
    assert_eq!(shop.cli(&ack), "3");
    let s = run_on(&shop, fresh);
    assert_eq!(
        (s["trimmed"].as_u64(), s["length"].as_u64()),
        (Some(0), Some(3)),
        "{s}"
    );
}

/// Compensator lines in the app's log.
fn compensator_lines(shop: &Shop) -> Vec<String> {
    let log = shop.app.stderr();
    let lines = log.lines().filter(|l| l.contains("compensator: "));
    lines.map(str::to_owned).collect()
}

/// Idle runs log one heartbeat a minute at most; a run that did something, or failed, logs
/// its line.
#[test]
fn an_idle_compensator_logs_a_heartbeat_at_most_once_a_minute() {
    // No receivers: the test's own group is the only reader of its stream.
    let mut shop = Shop::boot_without_receivers();
    for _ in 0..3 {
        shop.compensator_run();
    }
    let lines = compensator_lines(&shop);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("compensator: idle (heartbeat"),
        "{lines:?}"
    );

    // A run that trims something says so.
    entries(&shop, "events:stock", 2);
    shop.cli(&["XGROUP", "CREATE", "events:stock", "g", "0"]);
    shop.cli(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "c",
        "STREAMS",
        "events:stock",
        ">",
    ]);
    shop.cli(&["XACK", "events:stock", "g", "1-1", "1-2"]);
    shop.compensator_run();
    let lines = compensator_lines(&shop);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[1].contains("trimmed 1 "), "{lines:?}");
    shop.compensator_run();
    assert_eq!(compensator_lines(&shop).len(), 2, "idle again: no line");

    // A run that fails says so, however recent the heartbeat.
    shop.redis.stop_saving().expect("stop redis");
    let run = shop.compensator_run();
    assert!(
        !run["errors"].as_array().expect("errors").is_empty(),
        "{run}"
    );
    let lines = wait_for(WAIT, "the failed run's line", || {
        let lines = compensator_lines(&shop);
        (lines.len() == 3).then_some(lines)
    });
    assert!(
        lines[2].contains("errors ") && !lines[2].contains("errors none"),
        "{lines:?}"
    );
}

/// The ops route needs the admin token.
#[test]
fn the_stream_report_needs_the_admin_token() {
    let shop = Shop::boot_without_cron();
    let none = shop.app.get("/api/ops/streams").expect("GET");
    assert_problem(&none, 401, None);
    let (k, v) = e2e::internal_auth();
    let internal = shop
        .app
        .send("GET", "/api/ops/streams", &[(k, &v)], None)
        .expect("GET");
    assert_problem(&internal, 401, None);
    let post = shop
        .app
        .send("POST", "/api/ops/streams", &[], Some(b""))
        .expect("POST");
    assert_eq!(post.status, 405, "{}", post.text());
    assert_eq!(post.header("allow"), Some("GET"));
}

/// Under the real Spin CLI too: the trim script's flat reply comes through Spin's outbound
/// Redis, the run reports every stream and the ops route answers, with nothing read trimmed.
#[test]
fn under_real_spin_the_run_and_the_ops_route_report_every_stream() {
    let Some(shop) = Shop::boot_real_spin() else {
        return;
    };
    publish(&shop.redis, &ids("spin", 30), 30);
    shop.wait_group_caught_up("events:payments", "order", "msg_spin_00029", WAIT);
    let run = shop.compensator_run();
    assert!(run["errors"].as_array().is_some_and(Vec::is_empty), "{run}");
    for stream in ["events:orders", "events:payments", "events:stock"] {
        stream_of(&run["streams"], stream);
    }
    let g = group(&run["streams"], "events:payments", "order");
    assert_eq!(g["unacknowledged"], 0, "{g}");
    let s = stream_of(&run["streams"], "events:payments");
    assert_eq!(
        s["length"], 30,
        "acknowledged, but younger than the retention: {s}"
    );
    let ops = streams_report(&shop);
    assert_eq!(ops["lag_threshold"], 10_000, "spin.toml's default");
    assert_eq!(group(&ops["streams"], "events:payments", "order")["lag"], 0);
}

//! The host's limits (issue 13 §3): request bodies capped while they are read, instances bounded
//! in memory and run time (the others carry on, a killed instance's SQLite transaction is rolled
//! back), header-read and body-idle timeouts, a cap on concurrent connections, a bad `Host` is a
//! 400, and the host's memory stays bounded under a 1 GiB chunked body. Small configured values
//! keep each test to seconds; every connection is on loopback.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

const APP: &str = r#"
spin_manifest_version = 2
[application]
name = "limits"
[[trigger.http]]
route = "/..."
component = "ks"
[component.ks]
source = @kitchen_sink@
sqlite_databases = ["default"]
"#;

/// Starts the host with extra `up` arguments (`--max-request-body 64KiB` ...).
fn start(t: &TestApp, args: &[&str]) -> SpinApp {
    let mut b = t.builder();
    for a in args {
        b = b.arg(*a);
    }
    b.start().unwrap_or_else(|e| panic!("{e:#}"))
}

fn assert_problem(resp: &RawResponse, status: u16, type_suffix: &str) {
    assert_eq!(
        resp.status,
        status,
        "body: {}",
        String::from_utf8_lossy(&resp.body)
    );
    assert_eq!(
        resp.header("content-type"),
        Some("application/problem+json")
    );
    let body = resp.json();
    assert_eq!(body["status"], status, "{body}");
    let type_ = body["type"].as_str().unwrap_or_default();
    assert!(type_.ends_with(type_suffix), "{body}");
}

/// Sends a chunked POST of up to `total` bytes in 64 KiB chunks on `stream` from a thread;
/// returns how many bytes it managed to send before the host stopped reading.
fn send_chunked(mut stream: TcpStream, path: &str, total: u64) -> std::thread::JoinHandle<u64> {
    let head =
        format!("POST {path} HTTP/1.1\r\nhost: localhost\r\ntransfer-encoding: chunked\r\n\r\n");
    std::thread::spawn(move || {
        let chunk = vec![b'x'; 64 << 10];
        let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
        framed.extend_from_slice(&chunk);
        framed.extend_from_slice(b"\r\n");
        if stream.write_all(head.as_bytes()).is_err() {
            return 0;
        }
        let mut sent = 0u64;
        while sent < total {
            if stream.write_all(&framed).is_err() {
                return sent;
            }
            sent += chunk.len() as u64;
        }
        let _ = stream.write_all(b"0\r\n\r\n");
        sent
    })
}

#[test]
fn a_body_over_the_host_limit_is_a_413_while_it_is_read() {
    let t = TestApp::new(APP);
    let app = start(&t, &["--max-request-body", "64KiB"]);

    // Under the limit: the component gets the whole body.
    let small = vec![7u8; 60 << 10];
    let resp = app.send("POST", "/body-len", &[], Some(&small)).unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.json()["len"], small.len());

    // Declared too large: refused before any byte of the body is read.
    let resp = raw_exchange(
        app.port,
        b"POST /body-len HTTP/1.1\r\nhost: localhost\r\ncontent-length: 1073741824\r\n\r\n",
    );
    assert_problem(&resp, 413, "request-body-too-large");

    // Chunked, 64 MiB: refused once 64 KiB have been read; the rest is never read (the host
    // closes the connection, so the sender cannot write it all).
    let stream = connect(app.port, Duration::from_secs(60));
    let mut reader = stream.try_clone().expect("clone");
    let sender = send_chunked(stream, "/body-len", 64 << 20);
    let resp = read_response(&mut reader).expect("a response");
    assert_problem(&resp, 413, "request-body-too-large");
    assert_eq!(resp.header("connection"), Some("close"));
    let sent = sender.join().expect("sender");
    assert!(
        sent < 64 << 20,
        "the host read the whole 64 MiB body it had refused ({sent} bytes sent)"
    );
    // And it keeps serving.
    assert_eq!(get_json(&app, "/instance-counter")["ok"], 1);
}

#[test]
fn the_host_rss_stays_bounded_while_a_1_gib_chunked_body_is_refused() {
    // The default limits, as `spin-host up` runs.
    let t = TestApp::new(APP);
    let app = t.start();
    assert_eq!(get_json(&app, "/instance-counter")["ok"], 1);
    let baseline = proc_memory(app.pid(), "VmRSS");

    let stream = connect(app.port, Duration::from_secs(120));
    let mut reader = stream.try_clone().expect("clone");
    let sender = send_chunked(stream, "/body-len", 1 << 30);
    let resp = read_response(&mut reader).expect("a response");
    drop(reader);
    let sent = sender.join().expect("sender");
    let peak = proc_memory(app.pid(), "VmHWM");
    assert_problem(&resp, 413, "request-body-too-large");
    assert!(sent < 1 << 30, "the whole 1 GiB body was read");
    let bound = 300 << 20;
    assert!(
        peak < baseline + bound,
        "the host's peak RSS {} MiB exceeds its baseline {} MiB by more than {} MiB",
        peak >> 20,
        baseline >> 20,
        bound >> 20
    );
}

#[test]
fn an_instance_past_its_memory_limit_gets_a_500_problem_and_the_host_carries_on() {
    let t = TestApp::new(APP);
    let app = start(&t, &["--max-instance-memory", "32MiB"]);
    let resp = raw_exchange(
        app.port,
        b"GET /alloc?mib=0 HTTP/1.1\r\nhost: localhost\r\n\r\n",
    );
    assert_problem(&resp, 500, "instance-memory-limit");
    assert!(
        app.stderr().contains("exceeded its memory limit"),
        "{}",
        app.stderr()
    );
    // Within the limit, the same route works, and so does everything else.
    assert_eq!(get_json(&app, "/alloc?mib=8")["ok"], 8);
    assert_eq!(get_json(&app, "/instance-counter")["ok"], 1);
}

#[test]
fn an_instance_past_its_run_time_gets_a_503_problem_and_others_carry_on_meanwhile() {
    let t = TestApp::new(APP);
    // One worker thread: a spinning guest that never yielded would stall every other request.
    let app = t
        .builder()
        .env("SPIN_HOST_WORKER_THREADS", "1")
        .arg("--max-instance-time")
        .arg("3s")
        .start()
        .unwrap_or_else(|e| panic!("{e:#}"));
    let port = app.port;
    let spinners: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(move || {
                let resp = raw_exchange(port, b"GET /spin HTTP/1.1\r\nhost: localhost\r\n\r\n");
                (resp, Instant::now())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(get_json(&app, "/instance-counter")["ok"], 1);
    let served = Instant::now();
    for s in spinners {
        let (resp, at) = s.join().expect("spinner");
        assert_problem(&resp, 503, "instance-time-limit");
        assert!(
            at > served,
            "the other request was answered only after the spinning ones ended"
        );
    }
    // A guest waiting in a host call is ended at its deadline too.
    let resp = raw_exchange(
        port,
        b"GET /sleep?ms=600000 HTTP/1.1\r\nhost: localhost\r\n\r\n",
    );
    assert_problem(&resp, 503, "instance-time-limit");
    assert!(
        app.stderr().contains("exceeded its run time limit"),
        "{}",
        app.stderr()
    );
}

#[test]
fn a_killed_instance_gives_up_its_sqlite_write_turn_and_its_transaction_is_rolled_back() {
    let t = TestApp::new(APP);
    let app = start(&t, &["--max-instance-time", "2s"]);
    assert_eq!(
        get_json(&app, "/sqlite3/put?key=before&value=1")["ok"],
        true
    );
    let port = app.port;
    let holder = std::thread::spawn(move || {
        raw_exchange(
            port,
            b"GET /sqlite3/hold-and-spin?key=held&value=x HTTP/1.1\r\nhost: localhost\r\n\r\n",
        )
    });
    std::thread::sleep(Duration::from_millis(300));
    // This write queues behind the held write turn, and gets it once the holder is killed.
    let after = get_json(&app, "/sqlite3/put?key=after&value=2");
    assert_eq!(after["ok"], true, "{after}");
    assert_problem(&holder.join().expect("holder"), 503, "instance-time-limit");
    assert_eq!(get_json(&app, "/sqlite3/get?key=after")["ok"], "2");
    assert_eq!(
        get_json(&app, "/sqlite3/get?key=held")["ok"],
        Value::Null,
        "the killed instance's transaction was not rolled back"
    );
}

#[test]
fn a_connection_that_sends_its_headers_too_slowly_is_closed() {
    let t = TestApp::new(APP);
    let app = start(&t, &["--header-read-timeout", "1s"]);
    // A header line every 300 ms, never the blank line that ends them.
    let mut slow = connect(app.port, Duration::from_secs(30));
    slow.write_all(b"GET /instance-counter HTTP/1.1\r\n")
        .unwrap();
    let started = Instant::now();
    let mut closed = false;
    while started.elapsed() < Duration::from_secs(30) {
        if slow.write_all(b"x-slow: 1\r\n").is_err()
            || closed_within(&mut slow, Duration::from_millis(300))
        {
            closed = true;
            break;
        }
    }
    assert!(
        closed,
        "a connection trickling header lines was still open after 30 s"
    );

    // A connection that sends nothing at all, and a kept-alive one after its first answer.
    let mut silent = connect(app.port, Duration::from_secs(30));
    assert!(
        closed_within(&mut silent, Duration::from_secs(30)),
        "a silent connection stayed open"
    );
    let mut kept = connect(app.port, Duration::from_secs(30));
    kept.write_all(b"GET /instance-counter HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .unwrap();
    let resp = read_response(&mut kept).expect("first response");
    assert_eq!(resp.status, 200);
    assert!(
        closed_within(&mut kept, Duration::from_secs(30)),
        "an idle kept-alive connection stayed open"
    );
    // Meanwhile the host serves as usual.
    assert_eq!(get_json(&app, "/instance-counter")["ok"], 1);
}

#[test]
fn a_body_that_stops_arriving_is_a_408() {
    let t = TestApp::new(APP);
    let app = start(&t, &["--body-idle-timeout", "1s"]);
    let mut s = connect(app.port, Duration::from_secs(30));
    s.write_all(
        b"POST /body-len HTTP/1.1\r\nhost: localhost\r\ncontent-length: 100\r\n\r\n0123456789",
    )
    .unwrap();
    let resp = read_response(&mut s).expect("a response");
    assert_problem(&resp, 408, "request-body-timeout");
    assert!(closed_within(&mut s, Duration::from_secs(30)));
    assert_eq!(get_json(&app, "/instance-counter")["ok"], 1);
}

#[test]
fn connections_past_the_cap_wait_until_one_is_closed() {
    let t = TestApp::new(APP);
    let app = start(
        &t,
        &["--max-connections", "2", "--header-read-timeout", "2s"],
    );
    // Two silent connections take both slots (a connect succeeds: the kernel's backlog).
    let mut silent: Vec<TcpStream> = (0..2)
        .map(|_| connect(app.port, Duration::from_secs(30)))
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut third = connect(app.port, Duration::from_secs(30));
    third
        .write_all(
            b"GET /instance-counter HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n",
        )
        .unwrap();
    let resp = read_response(&mut third).expect("the third connection is served eventually");
    assert_eq!(resp.status, 200);
    // It was served only once the host had closed a silent one (its header read timeout).
    let freed = silent
        .iter_mut()
        .map(|s| closed_within(s, Duration::from_millis(50)))
        .filter(|closed| *closed)
        .count();
    assert!(
        freed >= 1,
        "the third connection was served while both slots were still taken"
    );
}

#[test]
fn a_missing_or_malformed_host_header_is_a_400_problem() {
    let t = TestApp::new(APP);
    let app = t.start();
    for request in [
        &b"GET /instance-counter HTTP/1.1\r\nhost: a b\r\n\r\n"[..],
        b"GET /instance-counter HTTP/1.0\r\n\r\n",
    ] {
        let resp = raw_exchange(app.port, request);
        assert_problem(&resp, 400, "bad-host");
        assert_eq!(resp.json()["field"], "host");
    }
    assert!(
        !app.stderr().contains("error processing request"),
        "{}",
        app.stderr()
    );
    assert_eq!(get_json(&app, "/instance-counter")["ok"], 1);
}

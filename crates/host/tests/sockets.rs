//! wasi:sockets as Spin: a TCP connect or a UDP datagram reaches an address only if
//! `allowed_outbound_hosts` grants it (`tcp://host:port`, `udp://host:port`); anything else fails
//! in the guest and never reaches the peer. The kitchen-sink's `/tcp` and `/udp` routes use Rust's
//! std sockets (wasi:sockets on wasm32-wasip2) against listeners this test runs.
//!
//! `granted` (at `/...`) may reach the first TCP and UDP listener only; `none` (at `/none/...`)
//! has no grant at all.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

/// A loopback TCP listener answering `pong:<first line>` and closing; counts connections.
struct TcpPeer {
    port: u16,
    accepted: Arc<AtomicUsize>,
}

impl TcpPeer {
    fn start() -> TcpPeer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind tcp");
        let port = listener.local_addr().expect("addr").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                counter.fetch_add(1, Ordering::SeqCst);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut line = String::new();
                let _ = BufReader::new(&stream).read_line(&mut line);
                let _ = write!(stream, "pong:{}", line.trim_end());
            }
        });
        TcpPeer { port, accepted }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// A loopback UDP socket answering every datagram with `pong:<datagram>`; counts datagrams.
struct UdpPeer {
    port: u16,
    received: Arc<AtomicUsize>,
}

impl UdpPeer {
    fn start() -> UdpPeer {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let port = socket.local_addr().expect("addr").port();
        let received = Arc::new(AtomicUsize::new(0));
        let counter = received.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            while let Ok((n, from)) = socket.recv_from(&mut buf) {
                counter.fetch_add(1, Ordering::SeqCst);
                let reply = format!("pong:{}", String::from_utf8_lossy(&buf[..n]));
                let _ = socket.send_to(reply.as_bytes(), from);
            }
        });
        UdpPeer { port, received }
    }

    fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }
}

fn app(tcp_port: u16, udp_port: u16) -> TestApp {
    TestApp::new(&format!(
        r#"
spin_manifest_version = 2
[application]
name = "sockets"
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
allowed_outbound_hosts = ["tcp://127.0.0.1:{tcp_port}", "udp://127.0.0.1:{udp_port}"]
"#
    ))
}

#[test]
fn tcp_connect_only_to_a_granted_address() {
    let allowed = TcpPeer::start();
    let other = TcpPeer::start();
    let t = app(allowed.port, UdpPeer::start().port);
    let app = t.start();

    let body = get_json(&app, &format!("/tcp?addr=127.0.0.1:{}", allowed.port));
    assert_eq!(body["ok"], "pong:ping", "{body}");
    assert_eq!(allowed.accepted(), 1);

    // A port that is not granted, and a component with no grant at all.
    let body = get_json(&app, &format!("/tcp?addr=127.0.0.1:{}", other.port));
    assert_eq!(body["error"], "connect", "{body}");
    let body = get_json(&app, &format!("/none/tcp?addr=127.0.0.1:{}", allowed.port));
    assert_eq!(body["error"], "connect", "{body}");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(other.accepted(), 0, "a denied connect reached the peer");
    assert_eq!(allowed.accepted(), 1, "a denied connect reached the peer");
}

#[test]
fn udp_only_to_a_granted_address() {
    let allowed = UdpPeer::start();
    let other = UdpPeer::start();
    let t = app(TcpPeer::start().port, allowed.port);
    let app = t.start();

    let body = get_json(&app, &format!("/udp?addr=127.0.0.1:{}", allowed.port));
    assert_eq!(
        body["ok"],
        format!("pong:ping from 127.0.0.1:{}", allowed.port),
        "{body}"
    );
    assert_eq!(allowed.received(), 1);

    let body = get_json(&app, &format!("/udp?addr=127.0.0.1:{}", other.port));
    assert_eq!(body["error"], "send", "{body}");
    // No grant at all: no UDP socket, not even the wildcard bind before the send.
    let body = get_json(&app, &format!("/none/udp?addr=127.0.0.1:{}", allowed.port));
    assert_eq!(body["error"], "bind", "{body}");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(other.received(), 0, "a denied datagram reached the peer");
    assert_eq!(allowed.received(), 1, "a denied datagram reached the peer");
}

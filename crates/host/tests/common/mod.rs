//! Shared by the host test binaries: manifests written into a tempdir with absolute `source`
//! paths to the test components, and small JSON / polling helpers.
#![allow(dead_code, unused_imports)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use serde_json::{json, Value};
pub use testkit::{RedisServer, Response, SpinApp};

/// A test application: its tempdir (manifest, state dir, runtime config live there).
pub struct TestApp {
    pub dir: tempfile::TempDir,
    pub manifest: PathBuf,
}

impl TestApp {
    /// Writes `spin.toml` into a fresh tempdir. In `body`, `@kitchen_sink@`, `@hello@`,
    /// `@redis_listener@`, `@cron_ticker@` and `@all_imports@` stand for the TOML-quoted
    /// absolute path of that component's `.wasm`; `@dir@` for the tempdir itself.
    pub fn new(body: &str) -> TestApp {
        let dir = tempfile::tempdir().expect("tempdir");
        let manifest = dir.path().join("spin.toml");
        let text = expand(body, dir.path());
        std::fs::write(&manifest, text).expect("write spin.toml");
        TestApp { dir, manifest }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes a file next to the manifest (runtime config), with the same placeholders.
    pub fn write(&self, rel: &str, body: &str) -> PathBuf {
        let path = self.path(rel);
        std::fs::write(&path, expand(body, self.dir.path())).expect("write file");
        path
    }

    /// A builder with `--state-dir <tempdir>/state`.
    pub fn builder(&self) -> testkit::SpinAppBuilder {
        SpinApp::builder(&self.manifest).state_dir(self.path("state"))
    }

    /// Starts the host with `--state-dir <tempdir>/state`, panicking with its output on failure.
    pub fn start(&self) -> SpinApp {
        self.builder().start().unwrap_or_else(|e| panic!("{e:#}"))
    }
}

fn expand(body: &str, dir: &Path) -> String {
    let mut text = body.to_owned();
    for name in [
        "kitchen_sink",
        "hello",
        "redis_listener",
        "cron_ticker",
        "all_imports",
    ] {
        let placeholder = format!("@{name}@");
        if text.contains(&placeholder) {
            text = text.replace(&placeholder, &toml_str(&testkit::wasm(name)));
        }
    }
    text.replace("@dir@", toml_str(dir).trim_matches('"'))
}

/// A path as a TOML basic string.
pub fn toml_str(path: &Path) -> String {
    let s = path.display().to_string();
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// GET `path` and parse the JSON body, asserting status 200.
pub fn get_json(app: &SpinApp, path: &str) -> Value {
    let resp = app
        .get(path)
        .unwrap_or_else(|e| panic!("GET {path}: {e:#}\nstderr:\n{}", app.stderr()));
    assert_eq!(
        resp.status,
        200,
        "GET {path}: status {} body {}\nstderr:\n{}",
        resp.status,
        resp.text(),
        app.stderr()
    );
    resp.json()
}

/// POST `body` to `path` and parse the JSON answer, asserting status 200.
pub fn post_json(app: &SpinApp, path: &str, body: &str) -> Value {
    let resp = app
        .send("POST", path, &[], Some(body.as_bytes()))
        .unwrap_or_else(|e| panic!("POST {path}: {e:#}\nstderr:\n{}", app.stderr()));
    assert_eq!(
        resp.status,
        200,
        "POST {path}: status {} body {}",
        resp.status,
        resp.text()
    );
    resp.json()
}

/// Percent-encodes a query value.
pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Polls `f` until it returns `Some`, or panics with `what` after `timeout`.
pub fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `LRANGE list 0 -1` as lines.
pub fn lrange(redis: &RedisServer, list: &str) -> Vec<String> {
    let out = redis.cli(&["LRANGE", list, "0", "-1"]).expect("LRANGE");
    out.lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Waits until `channel` has `n` subscribers (the host's Redis trigger subscribed).
pub fn wait_subscribers(redis_port: u16, channel: &str, n: usize, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(out) = redis_cli(redis_port, &["PUBSUB", "NUMSUB", channel]) {
            let count = out
                .lines()
                .nth(1)
                .and_then(|l| l.trim().parse::<usize>().ok());
            if count.unwrap_or(0) >= n {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// `redis-cli --raw` on any port (for servers this file starts itself).
pub fn redis_cli(port: u16, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "--raw"])
        .args(args)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "redis-cli {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
}

/// Asserts the host exited non-zero with a message on stderr that contains every `needles`
/// (case-insensitive) and did not panic.
pub fn assert_clean_failure(
    status: std::process::ExitStatus,
    stdout: &str,
    stderr: &str,
    needles: &[&str],
) {
    assert!(
        !status.success(),
        "expected a non-zero exit, got {status}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "the host panicked instead of reporting an error:\n{stderr}"
    );
    let lower = stderr.to_lowercase();
    for needle in needles {
        assert!(
            lower.contains(&needle.to_lowercase()),
            "stderr does not mention {needle:?}:\n{stderr}"
        );
    }
}

/// A minimal HTTP/1.1 server on a free loopback port answering `200 <body>` to everything and
/// counting the connections it served, for outbound HTTP tests. Runs until the test ends.
pub struct TinyHttpServer {
    pub port: u16,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl TinyHttpServer {
    pub fn start(body: &'static str) -> TinyHttpServer {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = hits.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = [0u8; 8192];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(reply.as_bytes());
            }
        });
        TinyHttpServer { port, hits }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A response read off a raw socket: status, lower-cased headers, body.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// A loopback connection to the host, with a read timeout.
pub fn connect(port: u16, read_timeout: Duration) -> std::net::TcpStream {
    let s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(read_timeout)).expect("timeout");
    s
}

/// Reads one response (headers, then a `content-length` body or everything up to EOF).
pub fn read_response(stream: &mut impl std::io::Read) -> std::io::Result<RawResponse> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "closed before a response: {:?}",
                    String::from_utf8_lossy(&seen)
                ),
            ));
        }
        seen.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&seen[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = seen[head_end..].to_vec();
    let length = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok());
    while length.is_none_or(|len| body.len() < len) {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => body.extend_from_slice(&buf[..n]),
            Err(e) => return Err(e),
        }
    }
    Ok(RawResponse {
        status,
        headers,
        body,
    })
}

/// Sends `request` as is on a fresh connection and reads the response.
pub fn raw_exchange(port: u16, request: &[u8]) -> RawResponse {
    use std::io::Write;
    let mut s = connect(port, Duration::from_secs(60));
    s.write_all(request).expect("send");
    read_response(&mut s).expect("response")
}

/// Whether the peer has closed `stream` (a read returns EOF or a reset within `within`).
pub fn closed_within(stream: &mut std::net::TcpStream, within: Duration) -> bool {
    use std::io::Read;
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = stream.set_read_timeout(Some(left.max(Duration::from_millis(1))));
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
    false
}

/// `VmRSS` or `VmHWM` (peak) of a process, in bytes.
pub fn proc_memory(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

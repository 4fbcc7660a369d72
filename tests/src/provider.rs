//! A fake payment provider for the refunds receiver: Stripe's `POST /v1/refunds` on a free
//! loopback port, recording every call. Like Stripe it remembers each `Idempotency-Key`: the same
//! key with the same body answers the refund it already made (no second one), the same key with
//! another body is a 400. It can fail (500, no refund made) or stall (the refund is made, the
//! answer comes after the caller gave up) on demand, for the next calls in order.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the provider does with one of the next calls.
#[derive(Debug, Clone, Copy)]
pub enum Mishap {
    /// 500, nothing made.
    Fail,
    /// The refund is made, the answer held back this long.
    Stall(Duration),
}

/// One call as the provider received it.
#[derive(Debug, Clone)]
pub struct RefundCall {
    pub path: String,
    pub authorization: Option<String>,
    pub idempotency_key: Option<String>,
    pub body: String,
    /// The status it answered (or was about to, for a stalled call).
    pub status: u16,
}

/// A refund the provider made.
#[derive(Debug, Clone)]
pub struct Refund {
    pub id: String,
    pub idempotency_key: String,
    pub body: String,
}

#[derive(Default)]
struct State {
    calls: Vec<RefundCall>,
    refunds: Vec<Refund>,
    by_key: HashMap<String, usize>,
    mishaps: VecDeque<Mishap>,
}

/// The running fake provider (its accept thread lives as long as the test process).
pub struct FakeProvider {
    port: u16,
    state: Arc<Mutex<State>>,
}

impl FakeProvider {
    pub fn start() -> FakeProvider {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake provider");
        let port = listener.local_addr().expect("local addr").port();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = shared.clone();
                std::thread::spawn(move || serve(stream, &state));
            }
        });
        FakeProvider { port, state }
    }

    /// The base URL to set as `payment_api_base`.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The next calls meet `mishaps`, in order (then calls succeed again).
    pub fn then(&self, mishaps: &[Mishap]) {
        self.state.lock().unwrap().mishaps.extend(mishaps);
    }

    pub fn calls(&self) -> Vec<RefundCall> {
        self.state.lock().unwrap().calls.clone()
    }

    pub fn refunds(&self) -> Vec<Refund> {
        self.state.lock().unwrap().refunds.clone()
    }
}

/// Answers one connection (one request; `Connection: close`).
fn serve(stream: TcpStream, state: &Mutex<State>) {
    let Some((path, headers, body)) = read_request(&stream) else {
        return;
    };
    let header = |name: &str| headers.get(name).cloned();
    let key = header("idempotency-key");
    let (status, answer, stall) = decide(state, key.as_deref(), &body);
    state.lock().unwrap().calls.push(RefundCall {
        path,
        authorization: header("authorization"),
        idempotency_key: key,
        body,
        status,
    });
    if let Some(d) = stall {
        std::thread::sleep(d);
    }
    let reason = if status == 200 { "OK" } else { "Error" };
    let resp = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
        answer.len()
    );
    let mut stream = stream;
    let _ = stream.write_all(resp.as_bytes());
}

/// The status, body and stall of a call with `key` and `body`.
fn decide(state: &Mutex<State>, key: Option<&str>, body: &str) -> (u16, String, Option<Duration>) {
    let mut s = state.lock().unwrap();
    let Some(key) = key else {
        return (
            400,
            r#"{"error":{"message":"no Idempotency-Key"}}"#.into(),
            None,
        );
    };
    let mishap = s.mishaps.pop_front();
    if let Some(Mishap::Fail) = mishap {
        return (
            500,
            r#"{"error":{"message":"injected failure"}}"#.into(),
            None,
        );
    }
    let stall = match mishap {
        Some(Mishap::Stall(d)) => Some(d),
        _ => None,
    };
    let index = match s.by_key.get(key) {
        Some(&i) if s.refunds[i].body != body => {
            let e = r#"{"error":{"type":"idempotency_error","message":"key reused with another body"}}"#;
            return (400, e.into(), None);
        }
        Some(&i) => i,
        None => {
            let id = format!("re_fake_{}", s.refunds.len() + 1);
            let refund = Refund {
                id,
                idempotency_key: key.to_owned(),
                body: body.to_owned(),
            };
            s.refunds.push(refund);
            let i = s.refunds.len() - 1;
            s.by_key.insert(key.to_owned(), i);
            i
        }
    };
    let r = &s.refunds[index];
    let answer = serde_json::json!({"id": r.id, "object": "refund", "status": "succeeded"});
    (200, answer.to_string(), stall)
}

/// The request line's path, the headers (lower-case names) and the body.
fn read_request(stream: &TcpStream) -> Option<(String, HashMap<String, String>, String)> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_owned();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (name, value) = h.split_once(':')?;
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
    let chunked = headers
        .get("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        read_chunked(&mut reader)?
    } else {
        let length = headers.get("content-length").and_then(|l| l.parse().ok());
        let mut body = vec![0; length.unwrap_or(0)];
        reader.read_exact(&mut body).ok()?;
        body
    };
    Some((path, headers, String::from_utf8_lossy(&body).into_owned()))
}

/// A `Transfer-Encoding: chunked` body.
fn read_chunked(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        reader.read_line(&mut size).ok()?;
        let size = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
        let mut chunk = vec![0; size + 2]; // the chunk and its CRLF
        reader.read_exact(&mut chunk).ok()?;
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(&chunk[..size]);
    }
}

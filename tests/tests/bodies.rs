//! End to end: request bodies are capped while the components read them (issue 13, §3). Each
//! route that takes a body states its limit; a larger body is 413 problem+json as soon as the
//! limit is passed (or at once, when `Content-Length` says so), without the rest being read, and
//! a caller that must authenticate is refused before its body is read at all. A body at the
//! limit still works.
//!
//! The oversized bodies are sent chunked from another thread while the test waits for the
//! answer ([`e2e::send_streaming`]): the answer must come while the client is still sending.

use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use e2e::{admin_auth, customer_auth, send_streaming, Shop, StreamedAnswer};
use serde_json::{json, Value};

/// The limits the routes state (openapi.yaml): order creation, the webhook, a product PUT.
const ORDER_LIMIT: usize = 32 * 1024;
const WEBHOOK_LIMIT: usize = 64 * 1024;
const PRODUCT_LIMIT: usize = 8 * 1024;

/// Far above every limit and above what the loopback socket buffers hold, so a server that
/// reads it all before answering cannot answer while the client is still sending.
const HUGE: usize = 64 * 1024 * 1024;

fn huge_body(shop: &Shop, method: &str, path: &str, headers: &[(&str, &str)]) -> StreamedAnswer {
    let chunk = vec![b'x'; 64 * 1024];
    send_streaming(&shop.app.base_url, method, path, headers, &chunk, HUGE)
}

/// Asserts the answer is `status` problem+json that came before the client finished its body.
fn assert_refused_early(answer: &StreamedAnswer, status: u16, what: &str) -> Value {
    assert_eq!(answer.status, status, "{what}: {}", answer.body);
    assert!(
        !answer.body_finished && answer.sent_at_answer < HUGE,
        "{what}: answered only after {} of {HUGE} bytes were sent",
        answer.sent_at_answer
    );
    let body: Value = serde_json::from_str(&answer.body)
        .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {}", answer.body));
    assert_eq!(body["status"], status, "{what}: {body}");
    body
}

/// `body` (JSON) followed by spaces up to exactly `len` bytes (JSON allows trailing whitespace).
fn padded(body: &Value, len: usize) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(body).unwrap();
    assert!(bytes.len() <= len);
    bytes.resize(len, b' ');
    bytes
}

fn order_headers(user: &str, key: &str) -> Vec<(&'static str, String)> {
    let (k, v) = customer_auth(user);
    vec![
        (k, v),
        ("idempotency-key", key.to_owned()),
        ("content-type", "application/json".to_owned()),
    ]
}

fn borrowed<'a>(headers: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    headers.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[test]
fn an_oversized_chunked_body_is_413_while_it_is_read_on_every_kind_of_route() {
    let shop = Shop::boot_without_cron();
    let order = order_headers("u", "huge-order");
    let answer = huge_body(&shop, "POST", "/api/orders", &borrowed(&order));
    let p = assert_refused_early(&answer, 413, "order creation");
    assert_eq!(p["field"], "body", "{p}");
    assert_eq!(p["limit"], ORDER_LIMIT, "{p}");

    let signed = [
        ("stripe-signature", "t=1,v1=00"),
        ("content-type", "application/json"),
    ];
    let answer = huge_body(&shop, "POST", "/api/payments/webhook", &signed);
    let p = assert_refused_early(&answer, 413, "webhook");
    assert_eq!(p["limit"], WEBHOOK_LIMIT, "{p}");

    let (k, v) = admin_auth();
    let admin = [(k, v.as_str()), ("content-type", "application/json")];
    let answer = huge_body(&shop, "PUT", "/api/products/HUGE", &admin);
    let p = assert_refused_early(&answer, 413, "admin PUT");
    assert_eq!(p["limit"], PRODUCT_LIMIT, "{p}");

    // Nothing was stored, and the shop still serves.
    assert_eq!(shop.get_product("HUGE").status, 404);
    shop.migrate_orders();
    assert_eq!(shop.count_rows("orders"), 0);
}

#[test]
fn a_caller_that_must_authenticate_is_refused_before_its_body_is_read() {
    let shop = Shop::boot_without_cron();
    let anonymous = [
        ("idempotency-key", "anon"),
        ("content-type", "application/json"),
    ];
    let answer = huge_body(&shop, "POST", "/api/orders", &anonymous);
    assert_refused_early(&answer, 401, "anonymous order");

    let wrong = [("authorization", "Bearer not-the-admin")];
    let answer = huge_body(&shop, "PUT", "/api/products/X", &wrong);
    assert_refused_early(&answer, 401, "admin PUT with a wrong token");

    let answer = huge_body(&shop, "POST", "/api/stock/reservations", &wrong);
    assert_refused_early(&answer, 401, "reservation without the internal token");
}

/// A declared length above the route's limit (but below the host's own cap, so the component
/// is the one refusing) is 413 before a body byte is sent, naming the route's limit.
#[test]
fn a_declared_length_above_the_limit_is_413_before_a_byte_is_read() {
    let shop = Shop::boot_without_cron();
    let addr = shop.app.base_url.trim_start_matches("http://").to_owned();
    let mut stream = std::net::TcpStream::connect(&addr).expect("connect");
    let (k, v) = customer_auth("u");
    let declared = 1_000_000; // above ORDER_LIMIT, below the host's 10 MiB
    let head = format!(
        "POST /api/orders HTTP/1.1\r\nHost: {addr}\r\n{k}: {v}\r\nIdempotency-Key: declared\r\n\
         Content-Type: application/json\r\nContent-Length: {declared}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).expect("send head");
    // Not one body byte follows: only an answer that does not wait for the body arrives.
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut reader = BufReader::new(&stream);
    let mut status = String::new();
    reader
        .read_line(&mut status)
        .expect("an answer without the body");
    assert!(status.starts_with("HTTP/1.1 413"), "{status:?}");
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("header line");
        if line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().expect("content-length");
            }
        }
    }
    let mut body = vec![0; length];
    std::io::Read::read_exact(&mut reader, &mut body).expect("problem body");
    let problem: Value = serde_json::from_slice(&body).expect("problem json");
    assert_eq!(problem["limit"], ORDER_LIMIT, "{problem}");
    assert_eq!(problem["field"], "body", "{problem}");
}

/// `body` sent chunked in one go; the answer as [`send_streaming`] read it.
fn send_whole(
    shop: &Shop,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> StreamedAnswer {
    send_streaming(&shop.app.base_url, method, path, headers, body, body.len())
}

/// Asserts a 413 problem naming the body and its limit.
fn assert_too_large(answer: &StreamedAnswer, limit: usize) {
    assert_eq!(answer.status, 413, "{}", answer.body);
    let p: Value = serde_json::from_str(&answer.body).expect("problem JSON");
    assert_eq!(
        (p["field"].as_str(), p["limit"].as_u64()),
        (Some("body"), Some(limit as u64)),
        "{p}"
    );
}

/// The bodies one byte over a limit are sent over a raw connection: the server answers 413
/// and closes the connection without reading the rest, which a client that insists on
/// writing its whole body first (ureq) reports as a broken pipe instead of the answer.
#[test]
fn a_body_at_the_limit_still_works_and_one_byte_more_does_not() {
    let shop = Shop::boot_without_cron();

    // Admin PUT at its limit (a Content-Length request), then one byte more.
    let product = json!({"name": "At the limit", "price": 100, "currency": "EUR", "stock": 10});
    let (k, v) = admin_auth();
    let admin = [(k, v.as_str()), ("content-type", "application/json")];
    let at = padded(&product, PRODUCT_LIMIT);
    let ok = shop
        .app
        .send("PUT", "/api/products/A", &admin, Some(&at))
        .expect("PUT");
    assert_eq!(ok.status, 200, "{}", ok.text());
    let over = padded(&product, PRODUCT_LIMIT + 1);
    assert_too_large(
        &send_whole(&shop, "PUT", "/api/products/B", &admin, &over),
        PRODUCT_LIMIT,
    );
    assert_eq!(shop.get_product("B").status, 404);

    // An order at its limit, sent chunked; one byte more is refused.
    let order = json!({"user_id": "u", "items": [{"sku": "A", "quantity": 1}]});
    let headers = order_headers("u", "at-limit");
    let answer = send_whole(
        &shop,
        "POST",
        "/api/orders",
        &borrowed(&headers),
        &padded(&order, ORDER_LIMIT),
    );
    assert_eq!(answer.status, 201, "{}", answer.body);
    let headers = order_headers("u", "over-limit");
    let over = padded(&order, ORDER_LIMIT + 1);
    assert_too_large(
        &send_whole(&shop, "POST", "/api/orders", &borrowed(&headers), &over),
        ORDER_LIMIT,
    );
    assert_eq!(shop.levels("A"), (9, 1, 0), "one order placed");

    // A signed webhook at its limit is accepted (and recorded); one byte more is not.
    let order_id = serde_json::from_str::<Value>(&answer.body).unwrap()["order_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let event = e2e::stripe_event(
        "evt_limit",
        "payment_intent.succeeded",
        &order_id,
        100,
        "eur",
    );
    let sign = |body: &[u8]| e2e::stripe_signature(e2e::WEBHOOK_SECRET, e2e::unix_now(), body);
    let at = padded(&event, WEBHOOK_LIMIT);
    let resp = shop.webhook_raw(&at, Some(&sign(&at)));
    assert_eq!(resp.status, 200, "{}", resp.text());
    let over = padded(&event, WEBHOOK_LIMIT + 1);
    let signature = sign(&over);
    let headers = [
        ("stripe-signature", signature.as_str()),
        ("content-type", "application/json"),
    ];
    assert_too_large(
        &send_whole(&shop, "POST", "/api/payments/webhook", &headers, &over),
        WEBHOOK_LIMIT,
    );
}

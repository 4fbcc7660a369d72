//! Reading request bodies: capped while they are read, then parsed field by field.
//!
//! [`Incoming`] holds a request whose body has not been read: a route is chosen and its caller
//! authenticated on the head alone, then [`Incoming::read`] streams the body (wasi:http
//! incoming-body, as under real Spin) and stops at the route's limit with 413, so no request can
//! make a component buffer more than its route allows (a `Content-Length` above the limit is
//! refused before a byte is read). Routes that take no body never read it.
//!
//! Parsing: every malformed input becomes a problem+json naming the field (`items[1].quantity`)
//! instead of serde's free-text error or a trap. Not JSON at all (or not an object) is 400 with
//! `field: "body"`; a missing field, a wrong type or an out-of-range number is 422 naming the
//! field. Business rules stay in the domain: these helpers only extract primitives.

// `Problem` is the one error a request ends with, built at most once per request: boxing it
// would only add noise at every call site.
#![allow(clippy::result_large_err)]

use futures::StreamExt;
use serde_json::{Map, Value};
use spin_sdk::http::{IncomingRequest, Request};

use crate::Problem;

/// A request whose body is still unread.
pub struct Incoming {
    head: Request,
    body: IncomingRequest,
}

impl Incoming {
    pub fn new(body: IncomingRequest) -> Self {
        let head = Request::builder()
            .method(body.method())
            .uri(body.uri())
            .headers(body.headers())
            .build();
        Incoming { head, body }
    }

    /// Method, URI and headers (an empty body): what routing and authentication need.
    pub fn head(&self) -> &Request {
        &self.head
    }

    /// The request of a route that takes no body: the body is never read.
    pub fn without_body(self) -> Request {
        self.head
    }

    /// The request with its body, at most `limit` bytes: 413 (`field: "body"`) as soon as the
    /// body is known to be larger, without reading the rest.
    pub async fn read(self, limit: usize) -> Result<Request, Problem> {
        let Incoming { mut head, body } = self;
        if declared_length(&head).is_some_and(|n| n > limit as u64) {
            return Err(too_large(limit));
        }
        let mut stream = body.into_body_stream();
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                let detail = format!("the body could not be read: {}", e.to_debug_string());
                Problem::bad_request("body", detail)
            })?;
            if bytes.len() + chunk.len() > limit {
                return Err(too_large(limit));
            }
            bytes.extend_from_slice(&chunk);
        }
        *head.body_mut() = bytes;
        Ok(head)
    }

    /// [`Self::read`] with `Some(limit)`, [`Self::without_body`] with `None`.
    pub async fn read_if(self, limit: Option<usize>) -> Result<Request, Problem> {
        match limit {
            Some(limit) => self.read(limit).await,
            None => Ok(self.without_body()),
        }
    }
}

/// The `Content-Length` the client declared; an unreadable one is left to the stream.
fn declared_length(head: &Request) -> Option<u64> {
    head.header("content-length")?.as_str()?.trim().parse().ok()
}

/// 413: the body of this route is at most `limit` bytes.
pub fn too_large(limit: usize) -> Problem {
    let detail = format!("the request body must be at most {limit} bytes");
    Problem::new(413, "content-too-large", "Content too large", detail)
        .with_field("body")
        .with("limit", limit)
}

/// Parses `body` as a JSON object.
pub fn parse_object(body: &[u8]) -> Result<Map<String, Value>, Problem> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Problem::bad_request(
            "body",
            "request body must be a JSON object",
        )),
        Err(e) => Err(Problem::bad_request(
            "body",
            format!("request body is not valid JSON: {e}"),
        )),
    }
}

/// Integers below 2^53 are exact in an f64; from it on `9007199254740993.0` would read as its
/// neighbour, so such floats are refused rather than guessed.
const MAX_EXACT_FLOAT_INT: f64 = 9_007_199_254_740_992.0;

fn as_integer(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| {
        let f = v.as_f64()?;
        (f.fract() == 0.0 && f.abs() < MAX_EXACT_FLOAT_INT).then_some(f as i64)
    })
}

/// A JSON object plus where it sits in the request, for error paths.
#[derive(Debug, Clone)]
pub struct Fields<'a> {
    prefix: String,
    map: &'a Map<String, Value>,
}

fn wrong(path: &str, expected: &str) -> Problem {
    Problem::unprocessable(path, format!("`{path}` must be {expected}"))
}

impl<'a> Fields<'a> {
    /// The top-level object of a request body.
    pub fn root(map: &'a Map<String, Value>) -> Self {
        Fields {
            prefix: String::new(),
            map,
        }
    }

    /// The path of `key` inside this object, as the client wrote it.
    pub fn path(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.prefix)
        }
    }

    /// `null` counts as absent.
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn required(&self, key: &str) -> Result<&'a Value, Problem> {
        self.get(key).ok_or_else(|| {
            let path = self.path(key);
            Problem::unprocessable(&path, format!("`{path}` is required"))
        })
    }

    pub fn str(&self, key: &str) -> Result<&'a str, Problem> {
        let v = self.required(key)?;
        v.as_str().ok_or_else(|| wrong(&self.path(key), "a string"))
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<&'a str>, Problem> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| wrong(&self.path(key), "a string")),
        }
    }

    /// An integer that fits an i64. JSON (and JSON Schema's `integer`) does not tell `3` from
    /// `3.0` or `3e0`, so an integral number written with a fraction or exponent is that integer
    /// when it is exact (|n| < 2^53); `1.5`, `"1"` and larger or inexact numbers are refused.
    pub fn i64(&self, key: &str) -> Result<i64, Problem> {
        let v = self.required(key)?;
        as_integer(v).ok_or_else(|| wrong(&self.path(key), "an integer"))
    }

    pub fn opt_i64(&self, key: &str) -> Result<Option<i64>, Problem> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => as_integer(v)
                .map(Some)
                .ok_or_else(|| wrong(&self.path(key), "an integer")),
        }
    }

    /// A required array whose elements are all objects, each with its own path `key[i]`.
    pub fn objects(&self, key: &str) -> Result<Vec<Fields<'a>>, Problem> {
        let path = self.path(key);
        let items = self
            .required(key)?
            .as_array()
            .ok_or_else(|| wrong(&path, "an array"))?;
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let prefix = format!("{path}[{i}]");
                match item {
                    Value::Object(map) => Ok(Fields { prefix, map }),
                    _ => Err(wrong(&prefix, "an object")),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(s: &str) -> Map<String, Value> {
        parse_object(s.as_bytes()).unwrap()
    }

    #[test]
    fn not_json_or_not_an_object_is_400_body() {
        for bad in ["", "{", "[1]", "42", "\"x\"", "nul"] {
            let p = parse_object(bad.as_bytes()).unwrap_err();
            assert_eq!(p.status, 400, "{bad}");
            assert_eq!(p.field.as_deref(), Some("body"));
        }
    }

    #[test]
    fn names_missing_and_mistyped_fields() {
        let map = obj(
            r#"{"name": 3, "n": 1.5, "big": 1e30, "s": "x", "z": null, "items": [{"q": "2"}, 7]}"#,
        );
        let f = Fields::root(&map);
        assert_eq!(f.str("name").unwrap_err().field.as_deref(), Some("name"));
        assert_eq!(f.str("missing").unwrap_err().status, 422);
        assert_eq!(f.i64("n").unwrap_err().field.as_deref(), Some("n"));
        let map = obj(r#"{"a": 3.0, "b": 2e3, "c": -0.0, "d": 9007199254740993.0, "e": 1e300}"#);
        let g = Fields::root(&map);
        assert_eq!(g.i64("a").unwrap(), 3);
        assert_eq!(g.opt_i64("b").unwrap(), Some(2000));
        assert_eq!(g.i64("c").unwrap(), 0);
        assert_eq!(g.i64("d").unwrap_err().field.as_deref(), Some("d"));
        assert_eq!(g.i64("e").unwrap_err().status, 422);
        assert_eq!(f.i64("big").unwrap_err().field.as_deref(), Some("big"));
        assert_eq!(f.str("s").unwrap(), "x");
        assert_eq!(f.opt_i64("z").unwrap(), None);
        assert!(f.str("z").is_err());
        let err = f.objects("items").unwrap_err();
        assert_eq!(err.field.as_deref(), Some("items[1]"));
        let map = obj(r#"{"items": [{"q": "2"}]}"#);
        let items = Fields::root(&map).objects("items").unwrap();
        let err = items[0].i64("q").unwrap_err();
        assert_eq!(err.field.as_deref(), Some("items[0].q"));
        assert_eq!(err.status, 422);
    }
}

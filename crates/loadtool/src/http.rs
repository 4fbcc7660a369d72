//! A pooled HTTP/1.1 client for one app (hyper), timing each request.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// What came back: the status and body, or `None` for no answer (connection error, timeout),
/// and how long it took either way.
pub struct Reply {
    pub status: Option<u16>,
    pub body: Bytes,
    pub started: Instant,
    pub latency: Duration,
    /// Why there was no answer.
    pub error: Option<String>,
}

impl Reply {
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    pub fn text(&self) -> String {
        match &self.error {
            Some(e) => e.clone(),
            None => String::from_utf8_lossy(&self.body).into_owned(),
        }
    }
}

#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
    timeout: Duration,
}

impl Http {
    /// A client for the app at `base` (`http://host:port`, optionally with a path prefix).
    pub fn new(base: &str, timeout: Duration) -> Result<Http> {
        let base = base.trim_end_matches('/').to_owned();
        let uri: hyper::Uri = base.parse().with_context(|| format!("base URL {base}"))?;
        if uri.scheme_str() != Some("http") || uri.authority().is_none() {
            bail!("base URL {base}: only http://host:port is supported");
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Http {
            client,
            base,
            timeout,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// `method path` with `headers` and an optional JSON body; never fails for the app's
    /// answer or its absence (both are the measurement), only for a request it cannot build.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Reply> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let bytes = match body {
            Some(b) => {
                req = req.header("content-type", "application/json");
                Bytes::from(serde_json::to_vec(b)?)
            }
            None => Bytes::new(),
        };
        let req = req.body(Full::new(bytes)).context("build request")?;
        let started = Instant::now();
        let answer = tokio::time::timeout(self.timeout, async {
            let resp = self.client.request(req).await?;
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, body))
        })
        .await;
        let latency = started.elapsed();
        let (status, body, error) = match answer {
            Ok(Ok((status, body))) => (Some(status), body, None),
            Ok(Err(e)) => (None, Bytes::new(), Some(format!("{e:#}"))),
            Err(_) => (
                None,
                Bytes::new(),
                Some(format!("no answer within {:?}", self.timeout)),
            ),
        };
        Ok(Reply {
            status,
            body,
            started,
            latency,
            error,
        })
    }
}

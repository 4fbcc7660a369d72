//! Outbound HTTP (`wasi:http/outgoing-handler@0.2.x`, Spin's `factor-outbound-http`).
//!
//! wasmtime-wasi-http implements the interface; this module supplies the policy through its
//! `WasiHttpHooks::send_request` hook:
//! - a request is sent only if `allowed_outbound_hosts` grants its scheme/host/port, otherwise the
//!   guest gets `error-code.HTTP-request-denied`, as in Spin;
//! - from an HTTP-triggered instance, `http://<component-id>.spin.internal/...` (service chaining)
//!   is dispatched in-process to that component's HTTP handler, never over the network, and a
//!   relative URL (or `self.alt`) is a self-request to this host's listen address, allowed by a
//!   `http://self` / `*://*` grant;
//! - from a Redis- or cron-triggered instance neither exists, as in Spin, where only the HTTP
//!   trigger sets the self-request origin and the chaining interceptor: a granted relative URL
//!   fails with `HTTP-request-URI-invalid`, and a granted `*.spin.internal` URL goes to the network
//!   like any other host (and fails name resolution). Spin refuses to start a non-HTTP trigger
//!   whose components are granted a `*.spin.internal` host (see `host_requirements`).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::outbound_networking::{parse_service_chaining_host, AllowedHosts};

/// A response to a request handled inside this host.
pub type LocalResponse =
    Pin<Box<dyn Future<Output = Result<http::Response<WasiBody>, Error>> + Send>>;

/// What the HTTP trigger lends outbound HTTP (as Spin's trigger-http sets the self-request
/// origin and the service-chaining interceptor): a way to reach this app without the network.
/// Instances of other triggers get none, so they have neither.
pub trait LocalDispatch: Send + Sync {
    /// The address relative URLs (self-requests) go to, once the server listens.
    fn self_origin(&self) -> Option<SocketAddr>;

    /// Handles `request` with `component`'s HTTP handler, in-process (service chaining);
    /// `Error::DestinationNotFound` if the app has no such component.
    fn dispatch(
        self: Arc<Self>,
        component: String,
        request: http::Request<WasiBody>,
    ) -> LocalResponse;
}

/// The per-instance outbound HTTP policy.
pub struct OutboundHttpHooks {
    allowed_hosts: Arc<AllowedHosts>,
    local: Option<Arc<dyn LocalDispatch>>,
}

impl OutboundHttpHooks {
    /// Policy for one instance holding `allowed_hosts`; `local` is set by the HTTP trigger only.
    pub fn new(allowed_hosts: Arc<AllowedHosts>, local: Option<Arc<dyn LocalDispatch>>) -> Self {
        OutboundHttpHooks {
            allowed_hosts,
            local,
        }
    }
}

type SendResult = Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), Error>> + Send>,
    ),
    Error,
>;

impl WasiHttpHooks for OutboundHttpHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        let allowed_hosts = self.allowed_hosts.clone();
        let local = self.local.clone();
        Box::new(async move { send(&allowed_hosts, local, request, options).await })
    }
}

async fn send(
    allowed_hosts: &AllowedHosts,
    local: Option<Arc<dyn LocalDispatch>>,
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> SendResult {
    let host = request
        .uri()
        .authority()
        .map(|a| a.host().to_string())
        .unwrap_or_default();
    let is_self = host.is_empty() || host == "self.alt";

    if is_self {
        return send_to_self(allowed_hosts, local.as_deref(), request, options).await;
    }

    let uri_string = request.uri().to_string();
    let scheme = request.uri().scheme_str().unwrap_or("https").to_string();
    if !allowed_hosts.allows_url(&uri_string, &scheme) {
        return Err(Error::HttpRequestDenied);
    }

    // Only the HTTP trigger intercepts service chaining; elsewhere the host is looked up as is.
    let chained = local.and_then(|l| Some((parse_service_chaining_host(&host)?.to_string(), l)));
    if let Some((target, local)) = chained {
        // Spin strips the Host header before the interceptor sees the request.
        request.headers_mut().remove(http::header::HOST);
        let resp = local.dispatch(target, request).await?;
        return Ok((resp, Box::new(async { Ok(()) })));
    }

    forward(request, options).await
}

/// A relative URL: a request to this host's own listen address, from the HTTP trigger only.
async fn send_to_self(
    allowed_hosts: &AllowedHosts,
    local: Option<&dyn LocalDispatch>,
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> SendResult {
    if !allowed_hosts.allows_relative(&["http", "https"]) {
        return Err(Error::HttpRequestDenied);
    }
    // Only the HTTP trigger has a self-request origin.
    let Some(addr) = local.and_then(|l| l.self_origin()) else {
        return Err(Error::HttpRequestUriInvalid);
    };
    let pq = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".to_string());
    let uri: http::Uri = format!("http://{addr}{pq}")
        .parse()
        .map_err(|_| Error::HttpRequestUriInvalid)?;
    *request.uri_mut() = uri;
    forward(request, options).await
}

/// Sends over the network. wasmtime-wasi-http's client speaks HTTP/1.1 on a raw connection, so
/// the Host header must be the target's authority (Spin's pooled client adds it the same way).
async fn forward(
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> SendResult {
    if let Some(authority) = request.uri().authority() {
        if let Ok(v) = http::HeaderValue::from_str(authority.as_str()) {
            request.headers_mut().insert(http::header::HOST, v);
        }
    }
    let (resp, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
    let resp = resp.map(|b| b.map_frame(|f| f.map_data(Bytes::from)).boxed_unsync());
    Ok((resp, Box::new(io)))
}

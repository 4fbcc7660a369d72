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
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::outbound_networking::parse_service_chaining_host;
use crate::runtime::{AppRuntime, ComponentRuntime};
use crate::state::TriggerKind;

/// The per-instance outbound HTTP policy.
pub struct OutboundHttpHooks {
    app: Arc<AppRuntime>,
    component: Arc<ComponentRuntime>,
    trigger: TriggerKind,
}

impl OutboundHttpHooks {
    /// Policy for one instance of `component` run by `trigger`.
    pub fn new(
        app: Arc<AppRuntime>,
        component: Arc<ComponentRuntime>,
        trigger: TriggerKind,
    ) -> Self {
        OutboundHttpHooks {
            app,
            component,
            trigger,
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
        let app = self.app.clone();
        let component = self.component.clone();
        let trigger = self.trigger;
        Box::new(async move { send(app, component, trigger, request, options).await })
    }
}

async fn send(
    app: Arc<AppRuntime>,
    component: Arc<ComponentRuntime>,
    trigger: TriggerKind,
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
        return send_to_self(&app, &component, trigger, request, options).await;
    }

    let uri_string = request.uri().to_string();
    let scheme = request.uri().scheme_str().unwrap_or("https").to_string();
    if !component.allowed_hosts.allows_url(&uri_string, &scheme) {
        return Err(Error::HttpRequestDenied);
    }

    // Only the HTTP trigger intercepts service chaining; elsewhere the host is looked up as is.
    let chained = match trigger {
        TriggerKind::Http => parse_service_chaining_host(&host),
        TriggerKind::Redis | TriggerKind::Cron => None,
    };
    if let Some(target) = chained {
        let target = target.to_string();
        // Spin strips the Host header before the interceptor sees the request.
        request.headers_mut().remove(http::header::HOST);
        let Some(target_rt) = app.component(&target).cloned() else {
            return Err(Error::DestinationNotFound);
        };
        let resp = crate::trigger_http::handle_chained(&app, &target_rt, request)
            .await
            .map_err(|e| Error::InternalError(Some(format!("{e:#}"))))?;
        let resp = resp.map(|b| b.boxed_unsync());
        return Ok((resp, Box::new(async { Ok(()) })));
    }

    forward(request, options).await
}

/// A relative URL: a request to this host's own listen address, from the HTTP trigger only.
async fn send_to_self(
    app: &AppRuntime,
    component: &ComponentRuntime,
    trigger: TriggerKind,
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> SendResult {
    if !component.allowed_hosts.allows_relative(&["http", "https"]) {
        return Err(Error::HttpRequestDenied);
    }
    // Only the HTTP trigger has a self-request origin.
    let origin = match trigger {
        TriggerKind::Http => app.listen_addr.get().copied(),
        TriggerKind::Redis | TriggerKind::Cron => None,
    };
    let Some(addr) = origin else {
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

//! The HTTP trigger (Spin's `trigger-http`): an HTTP/1.1 server that routes each request to a
//! component's `wasi:http/incoming-handler`, with the request headers Spin adds
//! (`spin-full-url`, `spin-path-info`, `spin-matched-route`, `spin-base-path`,
//! `spin-component-route`, `spin-raw-component-route`, `spin-client-addr`,
//! `spin-path-match-<name>`), Spin's 404 for unmatched paths, `/.well-known/spin/health`, and
//! one log line per request on stdout.

use std::convert::Infallible;
use std::future::Future;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail, Result};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Body;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiBody, WasiHttpView};

use crate::http_guard::{
    guard_request, BodyWatch, ConnectionActivity, LingeringStream, Refusal, TrackedBody,
};
use crate::limits::{HttpLimits, InstanceFault};
use crate::outbound_http::{LocalDispatch, LocalResponse};
use crate::routes::RouteMatch;
use crate::runtime::{AppRuntime, ComponentRuntime};
use crate::state::TriggerKind;

/// Client address Spin reports for service-chained requests.
const CHAINED_CLIENT_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

/// Spin's well-known prefix.
const WELL_KNOWN_PREFIX: &str = "/.well-known/spin/";

/// Serves until the listener fails; the caller races this against a shutdown signal. At most
/// `max_connections` connections are served at once (the others wait in the listen backlog),
/// and a connection without a request in flight for `header_read_timeout` is closed.
pub async fn serve(app: Arc<AppRuntime>, listener: TcpListener) -> Result<()> {
    let limits = app.http_limits;
    let slots = limits
        .max_connections
        .map(|n| Arc::new(tokio::sync::Semaphore::new(n)));
    loop {
        let slot = match &slots {
            Some(s) => Some(s.clone().acquire_owned().await?),
            None => None,
        };
        let (stream, client_addr) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                eprintln!("spin-host: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        tokio::spawn(async move {
            serve_connection(app, stream, client_addr, limits).await;
            drop(slot);
        });
    }
}

/// One connection, until it closes or stays without a request in flight for too long.
async fn serve_connection(
    app: Arc<AppRuntime>,
    stream: tokio::net::TcpStream,
    client_addr: SocketAddr,
    limits: HttpLimits,
) {
    let activity = ConnectionActivity::new();
    let tracker = activity.clone();
    let service = hyper::service::service_fn(move |req| {
        let app = app.clone();
        let tracker = tracker.clone();
        let in_flight = tracker.begin();
        async move {
            let resp = handle(&app, req, client_addr).await;
            tracker.note_response(&resp);
            Ok::<_, Infallible>(resp.map(|body| TrackedBody::wrap(body, in_flight)))
        }
    });
    // HTTP/1.1, and HTTP/2 with prior knowledge (h2c), like Spin's server.
    let builder = auto::Builder::new(TokioExecutor::new());
    let stream = LingeringStream::new(stream, activity.clone());
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    let idle = async {
        match limits.header_read_timeout {
            Some(timeout) => activity.idle_for(timeout).await,
            None => std::future::pending().await,
        }
    };
    let result = tokio::select! {
        r = conn => r,
        () = idle => Err("no request headers within the header read timeout".into()),
    };
    if let Err(e) = result {
        if crate::runtime::env_flag("SPIN_HOST_VERBOSE") {
            eprintln!("spin-host: connection from {client_addr}: {e}");
        }
    }
}

fn full_body(bytes: impl Into<Bytes>) -> HyperOutgoingBody {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

fn empty_body() -> HyperOutgoingBody {
    Empty::<Bytes>::new()
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

fn status_response(status: StatusCode) -> Response<HyperOutgoingBody> {
    let mut resp = Response::new(empty_body());
    *resp.status_mut() = status;
    resp
}

fn log_request(
    app: &AppRuntime,
    method: &http::Method,
    path: &str,
    component: &str,
    status: StatusCode,
    started: Instant,
) {
    if !app.log_requests {
        return;
    }
    let elapsed = started.elapsed();
    request_log(format!(
        "{method} {path} {component} {} {:.3}ms\n",
        status.as_u16(),
        elapsed.as_secs_f64() * 1000.0
    ));
}

/// Request log lines go to a writer thread through a shared buffer: a request never waits on a
/// stdout write, and the writer collects a batch per millisecond: under load there is one `write`
/// per millisecond instead of one per request, and no wake-up syscall on the request path.
struct RequestLog {
    buf: std::sync::Mutex<(Vec<u8>, bool)>,
    wake: std::sync::Condvar,
}

static REQUEST_LOG: std::sync::OnceLock<Option<&'static RequestLog>> = std::sync::OnceLock::new();

/// Writes log lines still buffered (called on shutdown).
pub fn flush_request_log() {
    if let Some(Some(log)) = REQUEST_LOG.get() {
        if let Ok(mut guard) = log.buf.lock() {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&guard.0);
            let _ = out.flush();
            guard.0.clear();
        }
    }
}

fn request_log(line: String) {
    use std::sync::{Condvar, Mutex};
    type Log = RequestLog;
    let log = REQUEST_LOG.get_or_init(|| {
        let log: &'static Log = Box::leak(Box::new(Log {
            buf: Mutex::new((Vec::with_capacity(64 * 1024), false)),
            wake: Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("spin-host-log".into())
            .spawn(move || {
                let mut out_buf = Vec::with_capacity(64 * 1024);
                // While traffic flows the writer polls every millisecond, so requests never
                // pay a wake-up syscall; after 50 ms without a line it parks on the condvar.
                let mut idle_ticks = 0u32;
                loop {
                    {
                        let Ok(mut guard) = log.buf.lock() else {
                            return;
                        };
                        while guard.0.is_empty() && idle_ticks >= 50 {
                            guard.1 = true;
                            guard = match log.wake.wait(guard) {
                                Ok(g) => g,
                                Err(_) => return,
                            };
                            idle_ticks = 0;
                        }
                        guard.1 = false;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(1));
                    if let Ok(mut guard) = log.buf.lock() {
                        std::mem::swap(&mut guard.0, &mut out_buf);
                    }
                    if out_buf.is_empty() {
                        idle_ticks += 1;
                        continue;
                    }
                    idle_ticks = 0;
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(&out_buf);
                    let _ = out.flush();
                    out_buf.clear();
                }
            })
            .ok()
            .map(|_| log)
    });
    if let Some(log) = log {
        if let Ok(mut guard) = log.buf.lock() {
            guard.0.extend_from_slice(line.as_bytes());
            if guard.1 {
                guard.1 = false;
                log.wake.notify_one();
            }
            return;
        }
    }
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(line.as_bytes());
    let _ = out.flush();
}

/// Handles one inbound request end to end (never fails: errors become 4xx/5xx responses). The
/// body is held to the HTTP limits while the component reads it.
pub async fn handle<B>(
    app: &Arc<AppRuntime>,
    req: Request<B>,
    client_addr: SocketAddr,
) -> Response<HyperOutgoingBody>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let mut req = match guard_request(&app.http_limits, req) {
        Ok(req) => req,
        Err(refusal) => {
            let resp = refusal.response();
            log_request(app, &method, &path, "-", resp.status(), started);
            return resp;
        }
    };

    // Spin's strip_forbidden_headers: a service-chaining Host and Connection never reach guests.
    if let Some(host) = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
    {
        if crate::outbound_networking::parse_service_chaining_host(host).is_some() {
            req.headers_mut().remove(http::header::HOST);
        }
    }
    req.headers_mut().remove(http::header::CONNECTION);

    if let Some(well_known) = path.strip_prefix(WELL_KNOWN_PREFIX) {
        let resp = match well_known {
            "health" => Response::new(full_body(Bytes::from_static(b"OK"))),
            "info" => {
                let mut resp = Response::new(full_body(app.info.clone()));
                resp.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                resp
            }
            _ => status_response(StatusCode::NOT_FOUND),
        };
        log_request(app, &method, &path, "-", resp.status(), started);
        return resp;
    }

    let Some(route_match) = app.router.route(&path) else {
        let resp = status_response(StatusCode::NOT_FOUND);
        log_request(app, &method, &path, "-", resp.status(), started);
        return resp;
    };
    let component_id = route_match.route.component.clone();
    let resp = match app.component(&component_id) {
        Some(component) => respond(app, component, req, &route_match, client_addr).await,
        None => status_response(StatusCode::INTERNAL_SERVER_ERROR),
    };
    log_request(app, &method, &path, &component_id, resp.status(), started);
    resp
}

/// Runs a matched request: a request without a usable `Host` gets a 400 problem (Spin drops
/// the connection), execution errors become Spin's empty 500.
async fn respond<B>(
    app: &Arc<AppRuntime>,
    component: &Arc<ComponentRuntime>,
    req: Request<B>,
    route_match: &RouteMatch<'_>,
    client_addr: SocketAddr,
) -> Response<HyperOutgoingBody>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let mut req = req;
    if let Err(why) = set_req_uri(&mut req) {
        return Refusal::BadHost(why).response();
    }
    let result = async {
        prepare_headers(&mut req, route_match, client_addr)?;
        execute(app, component, req).await
    }
    .await;
    match result {
        Ok(resp) => resp,
        Err(e) => {
            eprintln!(
                "spin-host: component {:?}: error processing request: {e:#}",
                component.id
            );
            status_response(StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

/// Service chaining: `http://<id>.spin.internal/...` dispatched in-process with Spin's synthetic
/// route (`/...`, the whole path as `spin-path-info`, client address `0.0.0.0:0`).
pub async fn handle_chained<B>(
    app: &Arc<AppRuntime>,
    component: &Arc<ComponentRuntime>,
    req: Request<B>,
) -> Result<Response<HyperOutgoingBody>>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    if component.http.is_none() {
        bail!(
            "component {:?} has no HTTP handler to chain to",
            component.id
        );
    }
    let route = crate::routes::Route::synthetic(&component.id);
    let route_match = RouteMatch {
        route: &route,
        path_info: path.clone(),
        params: Vec::new(),
    };
    let resp = respond(app, component, req, &route_match, CHAINED_CLIENT_ADDR).await;
    log_request(app, &method, &path, &component.id, resp.status(), started);
    Ok(resp)
}

/// Spin's `set_req_uri`: make the URI absolute from the Host header (or the URI's authority).
/// The error says what is wrong with the request's `Host`.
fn set_req_uri<B>(req: &mut Request<B>) -> std::result::Result<(), &'static str> {
    let header_authority = req
        .headers()
        .get(http::header::HOST)
        .map(
            |h| -> std::result::Result<http::uri::Authority, &'static str> {
                let s = h.to_str().map_err(|_| "'Host' header is not valid UTF-8")?;
                s.parse()
                    .map_err(|_| "'Host' header contains an invalid authority")
            },
        )
        .transpose()?;
    let mut parts = req.uri().clone().into_parts();
    let authority = match (header_authority, parts.authority.take()) {
        (None, None) => return Err("no 'Host' header present in request"),
        (None, Some(a)) | (Some(a), None) => a,
        (Some(a1), Some(a2)) => {
            if a1 != a2 {
                return Err("authority in 'Host' header does not match authority in URI");
            }
            a1
        }
    };
    parts.scheme = Some(http::uri::Scheme::HTTP);
    parts.authority = Some(authority);
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    *req.uri_mut() = Uri::from_parts(parts).map_err(|_| "cannot build the request URI")?;
    Ok(())
}

/// The `spin-*` headers, computed as Spin's `compute_default_headers` does.
pub fn spin_headers(
    uri: &Uri,
    host: &str,
    route_match: &RouteMatch<'_>,
    client_addr: SocketAddr,
) -> Vec<(HeaderName, String)> {
    let abs_path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let scheme = uri.scheme_str().unwrap_or("http");
    let mut res = Vec::with_capacity(7 + route_match.params.len());
    res.push((
        HeaderName::from_static("spin-path-info"),
        route_match.path_info.clone(),
    ));
    res.push((
        HeaderName::from_static("spin-full-url"),
        format!("{scheme}://{host}{abs_path}"),
    ));
    res.push((
        HeaderName::from_static("spin-matched-route"),
        route_match.route.based_route.clone(),
    ));
    res.push((HeaderName::from_static("spin-base-path"), "/".to_string()));
    res.push((
        HeaderName::from_static("spin-raw-component-route"),
        route_match.route.raw_route.clone(),
    ));
    res.push((
        HeaderName::from_static("spin-component-route"),
        route_match.route.raw_route_or_prefix().to_string(),
    ));
    res.push((
        HeaderName::from_static("spin-client-addr"),
        client_addr.to_string(),
    ));
    for (name, value) in &route_match.params {
        let header = format!(
            "spin-path-match-{}",
            name.to_ascii_lowercase().replace('_', "-")
        );
        if let Ok(header) = HeaderName::from_bytes(header.as_bytes()) {
            res.push((header, value.clone()));
        }
    }
    res
}

fn prepare_headers<B>(
    req: &mut Request<B>,
    route_match: &RouteMatch<'_>,
    client_addr: SocketAddr,
) -> Result<()> {
    let host = match req.headers().get(http::header::HOST) {
        Some(h) => h
            .to_str()
            .map_err(|_| anyhow!("'Host' header is not valid UTF-8"))?
            .to_string(),
        None => "localhost".to_string(),
    };
    let extra = spin_headers(req.uri(), &host, route_match, client_addr);
    let headers = req.headers_mut();
    for (name, value) in extra {
        headers.insert(name, HeaderValue::try_from(value)?);
    }
    Ok(())
}

/// The HTTP trigger lends outbound HTTP its listen address (self-requests) and in-process
/// dispatch to other components (service chaining).
impl LocalDispatch for AppRuntime {
    fn self_origin(&self) -> Option<SocketAddr> {
        self.listen_addr.get().copied()
    }

    fn dispatch(self: Arc<Self>, component: String, request: Request<WasiBody>) -> LocalResponse {
        Box::pin(async move {
            let Some(target) = self.component(&component).cloned() else {
                return Err(wasmtime_wasi_http::Error::DestinationNotFound);
            };
            handle_chained(&self, &target, request)
                .await
                .map_err(|e| wasmtime_wasi_http::Error::InternalError(Some(format!("{e:#}"))))
        })
    }
}

/// The response channel of one guest call.
type ResponseRx = tokio::sync::oneshot::Receiver<
    std::result::Result<
        Response<HyperOutgoingBody>,
        wasmtime_wasi_http::p2::bindings::http::types::ErrorCode,
    >,
>;

/// Where a guest call that failed leaves its error, and the instance limit that ended it.
type FailureSlot = Arc<std::sync::Mutex<Option<(String, Option<InstanceFault>)>>>;

/// Instantiates the component in a fresh store and calls its HTTP handler. When the host cut
/// the request body off, or an instance limit ended the guest, the host answers for it.
pub async fn execute<B>(
    app: &Arc<AppRuntime>,
    component: &Arc<ComponentRuntime>,
    req: Request<B>,
) -> Result<Response<HyperOutgoingBody>>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let watch = req.extensions().get::<BodyWatch>().cloned();
    let failure = FailureSlot::default();
    let (mut guest, mut rx) = start_guest(app, component, req, failure.clone())?;

    // Drive the guest on this task until it sets the response (no task spawn, no cross-thread
    // wake-up on the hot path).
    let outcome = loop {
        tokio::select! {
            biased;
            r = &mut rx => break r,
            () = &mut guest, if !guest.is_done() => {}
        }
    };
    if let Some(refusal) = watch.as_ref().and_then(BodyWatch::refusal) {
        return Ok(refusal.response());
    }
    match outcome {
        Ok(Ok(resp)) => Ok(finish_response(resp, guest).await),
        Ok(Err(code)) => Err(anyhow!("the guest set an error response: {code:?}")),
        Err(_) => {
            let (why, fault) = failure
                .lock()
                .ok()
                .and_then(|mut f| f.take())
                .unwrap_or_else(|| ("the handler returned".to_string(), None));
            match fault {
                Some(fault) => Ok(Refusal::Instance(fault).response()),
                None => bail!("guest never invoked `response-outparam::set`: {why}"),
            }
        }
    }
}

/// Sets up a fresh instance's call of `wasi:http/incoming-handler.handle`, not yet polled: the
/// guest task, and the channel its response arrives on. The call ends at the instance's
/// deadline at the latest. A failure is logged and left in `failure`.
fn start_guest<B>(
    app: &Arc<AppRuntime>,
    component: &Arc<ComponentRuntime>,
    req: Request<B>,
    failure: FailureSlot,
) -> Result<(GuestTask, ResponseRx)>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let Some(pre) = component.http.clone() else {
        bail!(
            "component {:?} does not export wasi:http/incoming-handler",
            component.id
        );
    };
    let local: Arc<dyn LocalDispatch> = app.clone();
    let mut store = app.new_store(component, TriggerKind::Http, Some(local));
    let (tx, rx) = tokio::sync::oneshot::channel();
    let request = store
        .data_mut()
        .http()
        .new_incoming_request(Scheme::Http, req)?;
    let out = store.data_mut().http().new_response_outparam(tx)?;
    let id = component.id.clone();
    let guest = GuestTask::new(async move {
        let deadline = store.data().deadline;
        let result = crate::limits::until_deadline(deadline, async {
            let proxy = pre.instantiate_async(&mut store).await?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, request, out)
                .await?;
            Ok(())
        })
        .await;
        let memory_refused = store.data().limits.refused();
        // Drop the instance (and return its pool slot, roll back its SQLite transaction)
        // before reporting.
        drop(store);
        if let Err(e) = result {
            let fault = crate::limits::fault_of(&e, memory_refused);
            match fault {
                Some(f) => eprintln!("spin-host: component {id:?}: {}: {e:#}", f.describe()),
                None => eprintln!("spin-host: component {id:?}: handler failed: {e:?}"),
            }
            if let Ok(mut slot) = failure.lock() {
                *slot = Some((format!("{e:#}"), fault));
            }
        }
    });
    Ok((guest, rx))
}

/// The response the guest set, with a body the guest may still be writing.
async fn finish_response(
    resp: Response<HyperOutgoingBody>,
    mut guest: GuestTask,
) -> Response<HyperOutgoingBody> {
    // Most handlers finish right after setting the response: give the guest one more poll, and
    // if it is done, hand hyper a complete body (one write, with a content-length) instead of a
    // chunked stream.
    if !guest.is_done() {
        std::future::poll_fn(|cx| {
            let _ = std::pin::Pin::new(&mut guest).poll(cx);
            std::task::Poll::Ready(())
        })
        .await;
    }
    if guest.is_done() {
        resp.map(buffer_if_complete)
    } else {
        // The guest is still writing the body: the body drives it from now on.
        resp.map(|body| GuestDrivenBody { inner: body, guest }.boxed_unsync())
    }
}

/// Reads whatever the body already holds without waiting: a body that is complete becomes one
/// `Full` buffer; otherwise the frames read so far are replayed before the rest.
fn buffer_if_complete(mut body: HyperOutgoingBody) -> HyperOutgoingBody {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut data = bytes::BytesMut::new();
    loop {
        match std::pin::Pin::new(&mut body).poll_frame(&mut cx) {
            std::task::Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(chunk) => data.extend_from_slice(&chunk),
                Err(frame) => {
                    // Trailers: keep streaming semantics.
                    return Replay {
                        data: Some(data.freeze()),
                        frame: Some(frame),
                        rest: body,
                    }
                    .boxed_unsync();
                }
            },
            std::task::Poll::Ready(Some(Err(e))) => {
                return Replay {
                    data: Some(data.freeze()),
                    frame: None,
                    rest: ErrorBody(Some(e)).boxed_unsync(),
                }
                .boxed_unsync()
            }
            std::task::Poll::Ready(None) => return full_body(data.freeze()),
            std::task::Poll::Pending => {
                return Replay {
                    data: Some(data.freeze()),
                    frame: None,
                    rest: body,
                }
                .boxed_unsync()
            }
        }
    }
}

/// Replays buffered data (and one pending non-data frame) before the rest of a body.
struct Replay {
    data: Option<Bytes>,
    frame: Option<hyper::body::Frame<Bytes>>,
    rest: HyperOutgoingBody,
}

impl Body for Replay {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Some(d) = this.data.take() {
            if !d.is_empty() {
                return std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(d))));
            }
        }
        if let Some(f) = this.frame.take() {
            return std::task::Poll::Ready(Some(Ok(f)));
        }
        std::pin::Pin::new(&mut this.rest).poll_frame(cx)
    }
}

/// A body that fails once with a stored error.
struct ErrorBody(Option<wasmtime_wasi_http::Error>);

impl Body for ErrorBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.get_mut().0.take().map(Err))
    }
}

/// A guest call polled in place. Dropped while unfinished (client gone, body abandoned), it is
/// moved to a background task so the guest always runs to completion, as in Spin.
struct GuestTask {
    fut: Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
}

impl GuestTask {
    fn new(fut: impl std::future::Future<Output = ()> + Send + 'static) -> Self {
        GuestTask {
            fut: Some(Box::pin(fut)),
        }
    }

    fn is_done(&self) -> bool {
        self.fut.is_none()
    }
}

impl std::future::Future for GuestTask {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        let Some(fut) = self.fut.as_mut() else {
            return std::task::Poll::Ready(());
        };
        match fut.as_mut().poll(cx) {
            std::task::Poll::Ready(()) => {
                self.fut = None;
                std::task::Poll::Ready(())
            }
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

impl Drop for GuestTask {
    fn drop(&mut self) {
        if let Some(fut) = self.fut.take() {
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(fut);
            }
        }
    }
}

/// A response body that keeps polling the guest that produces it.
struct GuestDrivenBody {
    inner: HyperOutgoingBody,
    guest: GuestTask,
}

impl Body for GuestDrivenBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if !this.guest.is_done() {
            let _ = std::pin::Pin::new(&mut this.guest).poll(cx);
        }
        std::pin::Pin::new(&mut this.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::Router;

    #[test]
    fn spin_headers_match_spin() {
        let (router, _) = Router::build([("c", "/foo/...")]).expect("router");
        let m = router.route("/foo/bar").expect("match");
        let uri: Uri = "http://fermyon.dev/foo/bar?key1=value1&key2=value2"
            .parse()
            .expect("uri");
        let h = spin_headers(
            &uri,
            "fermyon.dev",
            &m,
            "127.0.0.1:8777".parse().expect("addr"),
        );
        let get = |k: &str| {
            h.iter()
                .find(|(n, _)| n.as_str() == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(
            get("spin-full-url"),
            Some("http://fermyon.dev/foo/bar?key1=value1&key2=value2")
        );
        assert_eq!(get("spin-path-info"), Some("/bar"));
        assert_eq!(get("spin-matched-route"), Some("/foo/..."));
        assert_eq!(get("spin-base-path"), Some("/"));
        assert_eq!(get("spin-raw-component-route"), Some("/foo/..."));
        assert_eq!(get("spin-component-route"), Some("/foo"));
        assert_eq!(get("spin-client-addr"), Some("127.0.0.1:8777"));
    }

    #[test]
    fn named_wildcards_become_headers() {
        let (router, _) = Router::build([("c", "/foo/:userid/...")]).expect("router");
        let m = router.route("/foo/42/bar").expect("match");
        let uri: Uri = "http://h/foo/42/bar".parse().expect("uri");
        let h = spin_headers(&uri, "h", &m, "127.0.0.1:1".parse().expect("addr"));
        let get = |k: &str| {
            h.iter()
                .find(|(n, _)| n.as_str() == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("spin-path-match-userid"), Some("42"));
        assert_eq!(get("spin-path-info"), Some("/bar"));
    }
}

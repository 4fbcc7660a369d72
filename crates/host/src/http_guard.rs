//! The HTTP trigger's guards against clients that send too much or too slowly: a request body
//! capped and timed while the component reads it, connections that must send their headers in
//! time, and the host's own answers (RFC 9457 problem details) when a guard or an instance limit
//! ends a request.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::limits::{HttpLimits, InstanceFault};

/// Why the host refused a request itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The body is larger than `max_request_body`.
    BodyTooLarge(u64),
    /// The body sent nothing for `body_idle_timeout`.
    BodyIdle(Duration),
    /// No usable `Host` header (and no authority in the request line).
    BadHost(&'static str),
    /// An instance limit ended the component.
    Instance(InstanceFault),
}

impl Refusal {
    /// The problem+json answer. It closes the connection where the request body may still be
    /// arriving, so the rest of it is never read.
    pub fn response(self) -> Response<HyperOutgoingBody> {
        let (status, slug, title, detail) = match self {
            Refusal::BodyTooLarge(max) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "request-body-too-large",
                "Request body too large",
                format!("the request body is larger than this server accepts ({max} bytes)"),
            ),
            Refusal::BodyIdle(idle) => (
                StatusCode::REQUEST_TIMEOUT,
                "request-body-timeout",
                "Request body timed out",
                format!("the request body sent nothing for {} ms", idle.as_millis()),
            ),
            Refusal::BadHost(why) => (
                StatusCode::BAD_REQUEST,
                "bad-host",
                "Bad Host header",
                why.to_string(),
            ),
            Refusal::Instance(fault) => (
                match fault {
                    InstanceFault::Memory => StatusCode::INTERNAL_SERVER_ERROR,
                    InstanceFault::Time => StatusCode::SERVICE_UNAVAILABLE,
                },
                match fault {
                    InstanceFault::Memory => "instance-memory-limit",
                    InstanceFault::Time => "instance-time-limit",
                },
                "Request ended by the host",
                fault.describe().to_string(),
            ),
        };
        problem(status, slug, title, &detail, self.closes())
    }

    fn closes(self) -> bool {
        matches!(
            self,
            Refusal::BodyTooLarge(_) | Refusal::BodyIdle(_) | Refusal::Instance(_)
        )
    }
}

/// An `application/problem+json` response; a 400 (a bad `Host`) names the `host` field.
fn problem(
    status: StatusCode,
    slug: &str,
    title: &str,
    detail: &str,
    close: bool,
) -> Response<HyperOutgoingBody> {
    let mut body = serde_json::json!({
        "type": format!("urn:spin-host:problem:{slug}"),
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
    });
    if status == StatusCode::BAD_REQUEST {
        body["field"] = "host".into();
    }
    let bytes = Bytes::from(body.to_string());
    let mut resp = Response::new(
        Full::new(bytes)
            .map_err(|never: std::convert::Infallible| match never {})
            .boxed_unsync(),
    );
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    if close {
        headers.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// Holds a request's body to `limits` as it will be read, with a [`BodyWatch`] in its
/// extensions; a declared length past the cap is refused at once.
pub fn guard_request<B>(
    limits: &HttpLimits,
    req: http::Request<B>,
) -> Result<http::Request<GuardedBody<B>>, Refusal> {
    if let Some(max) = limits.max_request_body {
        if declared_length(&req).is_some_and(|len| len > max) {
            return Err(Refusal::BodyTooLarge(max));
        }
    }
    let watch = BodyWatch::default();
    let mut req = req.map(|body| GuardedBody::new(body, limits, watch.clone()));
    req.extensions_mut().insert(watch);
    Ok(req)
}

/// The `Content-Length` a request declares, if any (an unparsable one counts as none: hyper
/// has already refused it).
fn declared_length<B>(req: &http::Request<B>) -> Option<u64> {
    req.headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// What became of a guarded body, shared between the body (read by the component) and the
/// trigger (which answers for the host when the body was refused).
#[derive(Debug, Clone, Default)]
pub struct BodyWatch(Arc<Mutex<Option<Refusal>>>);

impl BodyWatch {
    /// The refusal, once the body was cut off.
    pub fn refusal(&self) -> Option<Refusal> {
        self.0.lock().ok().and_then(|r| *r)
    }

    fn refuse(&self, refusal: Refusal) {
        if let Ok(mut slot) = self.0.lock() {
            slot.get_or_insert(refusal);
        }
    }
}

/// A request body held to the size and idle limits as it is read: past the size it fails (and
/// nothing more is read); waiting longer than the idle timeout for a frame, it fails too.
pub struct GuardedBody<B> {
    inner: B,
    seen: u64,
    max: Option<u64>,
    idle: Option<Duration>,
    /// Armed while the reader waits for a frame (allocated at the first wait).
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    waiting: bool,
    watch: BodyWatch,
}

impl<B> GuardedBody<B> {
    /// Guards `inner` with `limits`; `watch` learns why it was cut off.
    pub fn new(inner: B, limits: &HttpLimits, watch: BodyWatch) -> Self {
        GuardedBody {
            inner,
            seen: 0,
            max: limits.max_request_body,
            idle: limits.body_idle_timeout,
            timer: None,
            waiting: false,
            watch,
        }
    }

    fn fail(
        &mut self,
        refusal: Refusal,
    ) -> Poll<Option<Result<Frame<Bytes>, wasmtime_wasi_http::Error>>> {
        self.watch.refuse(refusal);
        let err = match refusal {
            Refusal::BodyTooLarge(max) => wasmtime_wasi_http::Error::HttpRequestBodySize(Some(max)),
            _ => wasmtime_wasi_http::Error::ConnectionReadTimeout,
        };
        Poll::Ready(Some(Err(err)))
    }

    /// Whether the idle timer ran out while the reader waited.
    fn idle_expired(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(idle) = self.idle else {
            return false;
        };
        let deadline = tokio::time::Instant::now() + idle;
        if !self.waiting {
            self.waiting = true;
            match &mut self.timer {
                Some(t) => t.as_mut().reset(deadline),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        self.timer
            .as_mut()
            .is_some_and(|t| t.as_mut().poll(cx).is_ready())
    }
}

impl<B> Body for GuardedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Some(refusal) = this.watch.refusal() {
            return this.fail(refusal);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.waiting = false;
                this.seen += frame.data_ref().map_or(0, |d| d.len() as u64);
                match this.max {
                    Some(max) if this.seen > max => this.fail(Refusal::BodyTooLarge(max)),
                    _ => Poll::Ready(Some(Ok(frame))),
                }
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending if this.idle_expired(cx) => match this.idle {
                Some(idle) => this.fail(Refusal::BodyIdle(idle)),
                None => Poll::Pending,
            },
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Activity of one connection: requests in flight, and since when it has had none.
#[derive(Debug)]
pub struct ConnectionActivity {
    started: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds from `started` to the moment the last request in flight finished.
    idle_since_ms: AtomicU64,
    /// The host answered with `connection: close` while the request body may still arrive.
    linger: AtomicBool,
}

impl ConnectionActivity {
    /// A fresh connection: idle (waiting for its first request) from now.
    pub fn new() -> Arc<Self> {
        Arc::new(ConnectionActivity {
            started: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            linger: AtomicBool::new(false),
        })
    }

    /// Notes a response that closes the connection, so its socket lingers (see
    /// [`LingeringStream`]).
    pub fn note_response<B>(&self, resp: &Response<B>) {
        if resp.headers().get(http::header::CONNECTION) == Some(&HeaderValue::from_static("close"))
        {
            self.linger.store(true, Ordering::Release);
        }
    }

    /// A request's headers arrived; the returned guard ends it when dropped (with the
    /// response body, once it is written or abandoned).
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// Resolves once the connection has had no request in flight for `timeout`.
    pub async fn idle_for(&self, timeout: Duration) {
        loop {
            let since =
                self.started + Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire));
            let expires = since + timeout;
            if self.in_flight.load(Ordering::Acquire) == 0 && Instant::now() >= expires {
                return;
            }
            let next = if self.in_flight.load(Ordering::Acquire) == 0 {
                expires
            } else {
                Instant::now() + timeout
            };
            tokio::time::sleep_until(next.into()).await;
        }
    }
}

/// One request in flight on a connection.
#[derive(Debug)]
pub struct InFlight(Arc<ConnectionActivity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        let now = activity.started.elapsed().as_millis() as u64;
        activity.idle_since_ms.store(now, Ordering::Release);
        activity.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that ends its request's [`InFlight`] when it is dropped.
pub struct TrackedBody {
    inner: HyperOutgoingBody,
    _in_flight: InFlight,
}

impl TrackedBody {
    /// `body`, ending `in_flight` with it.
    pub fn wrap(body: HyperOutgoingBody, in_flight: InFlight) -> HyperOutgoingBody {
        TrackedBody {
            inner: body,
            _in_flight: in_flight,
        }
        .boxed_unsync()
    }
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// A connection's socket. Closing a socket with unread data makes the kernel reset the
/// connection, and a client still sending its body may then lose the answer it was sent (a 413
/// before it is read). So when the host refused a request this way, the socket is closed as a
/// web server's "lingering close" does: write side shut, then at most [`LINGER_BYTES`] more read
/// and discarded for at most [`LINGER_TIME`], then closed.
pub struct LingeringStream {
    inner: Option<tokio::net::TcpStream>,
    activity: Arc<ConnectionActivity>,
}

/// How long a refused connection's socket lingers.
pub const LINGER_TIME: Duration = Duration::from_secs(1);
/// How much of a refused body is read (and discarded) while it lingers.
pub const LINGER_BYTES: usize = 1 << 20;

impl LingeringStream {
    /// `stream`, lingering on close when `activity` noted a refusal.
    pub fn new(stream: tokio::net::TcpStream, activity: Arc<ConnectionActivity>) -> Self {
        LingeringStream {
            inner: Some(stream),
            activity,
        }
    }
}

async fn linger(mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = stream.shutdown().await;
    let mut buf = vec![0u8; 64 << 10];
    let mut read = 0;
    let drain = async {
        while read < LINGER_BYTES {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
}

impl Drop for LingeringStream {
    fn drop(&mut self) {
        if !self.activity.linger.load(Ordering::Acquire) {
            return;
        }
        if let (Some(stream), Ok(rt)) = (self.inner.take(), tokio::runtime::Handle::try_current()) {
            rt.spawn(linger(stream));
        }
    }
}

impl tokio::io::AsyncRead for LingeringStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut().inner.as_mut() {
            Some(s) => Pin::new(s).poll_read(cx, buf),
            None => Poll::Ready(Ok(())),
        }
    }
}

impl tokio::io::AsyncWrite for LingeringStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut().inner.as_mut() {
            Some(s) => Pin::new(s).poll_write(cx, data),
            None => Poll::Ready(Ok(0)),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut().inner.as_mut() {
            Some(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            None => Poll::Ready(Ok(0)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.as_ref().is_some_and(|s| s.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut().inner.as_mut() {
            Some(s) => Pin::new(s).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut().inner.as_mut() {
            Some(s) => Pin::new(s).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

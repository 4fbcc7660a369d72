//! Guest stdout/stderr: both go to the host's stderr, one line at a time, prefixed with the
//! component id (`[order] ...`). The host's stdout is reserved for the `Serving ...` line and the
//! request log, which tools and tests parse.
//!
//! The WASIp2 stream is implemented directly (synchronous line-buffered writes) instead of through
//! wasmtime-wasi's async adapter, which would spawn a task per stream per request.

use std::io::Write;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Factory of per-component output streams.
#[derive(Debug, Default, Clone)]
pub struct Stdio;

impl Stdio {
    /// A stream for `component`.
    pub fn stream(&self, component: &str) -> ComponentOutput {
        ComponentOutput {
            prefix: Arc::from(component),
        }
    }
}

/// The `StdoutStream` given to a guest.
#[derive(Debug, Clone)]
pub struct ComponentOutput {
    prefix: Arc<str>,
}

impl IsTerminal for ComponentOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for ComponentOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(LineWriter::new(self.prefix.clone()))
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter::new(self.prefix.clone()))
    }
}

/// Buffers a partial line; writes complete lines with the prefix.
struct LineWriter {
    prefix: Arc<str>,
    buf: Vec<u8>,
}

impl LineWriter {
    fn new(prefix: Arc<str>) -> Self {
        LineWriter {
            prefix,
            buf: Vec::new(),
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        if let Some(last_nl) = self.buf.iter().rposition(|b| *b == b'\n') {
            let rest = self.buf.split_off(last_nl + 1);
            let lines = std::mem::replace(&mut self.buf, rest);
            let mut err = std::io::stderr().lock();
            for line in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let _ = write!(err, "[{}] ", self.prefix);
                let _ = err.write_all(line);
                let _ = err.write_all(b"\n");
            }
        }
        // Guard against a guest writing an endless line.
        if self.buf.len() > 64 * 1024 {
            self.flush_partial();
        }
    }

    fn flush_partial(&mut self) {
        if !self.buf.is_empty() {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "[{}] ", self.prefix);
            let _ = err.write_all(&self.buf);
            let _ = err.write_all(b"\n");
            self.buf.clear();
        }
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        self.flush_partial();
    }
}

impl OutputStream for LineWriter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[async_trait::async_trait]
impl Pollable for LineWriter {
    async fn ready(&mut self) {}
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.get_mut().push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.get_mut().flush_partial();
        Poll::Ready(Ok(()))
    }
}

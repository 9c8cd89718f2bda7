//! web: the status page, the JSON API and the Prometheus metrics, on one small HTTP server.
//!
//! It only reads: the current `Snapshot`, the DNS counters and the `StatusBoard`. It never
//! sends a change to the store and has no endpoint that changes state, so it needs no
//! credentials. Every response is computed from one snapshot loaded at the start of the
//! request. The page is rendered on the server (readable without JavaScript); its script
//! then follows `/events` (server-sent events carrying HTML fragments made by the same
//! renderer) and falls back to polling `/page.json`.
//!
//! The listener is bound by `app` before anything starts (see `bind`), like the DNS
//! sockets, so a taken port fails start-up with nothing half-started.

pub mod api;
pub mod metrics;
pub mod page;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::app::Shared;

/// How long open connections (event streams included) get to finish after shutdown starts.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// Most HTTP connections open at once; more wait in the kernel's backlog. The server shares
/// the process's file descriptors with DNS over TCP, which a flood of idle HTTP connections
/// must not starve.
pub const MAX_HTTP_CONNECTIONS: usize = 256;

/// The HTTP address could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for HTTP on {addr}: {source}")]
pub struct HttpBindError {
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// The web server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("cannot use the HTTP listener: {0}")]
    Listener(std::io::Error),
    #[error("HTTP server failed: {0}")]
    Serve(std::io::Error),
}

/// Binds the HTTP listener (blocking, before the runtime's tasks start).
pub fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, HttpBindError> {
    let err = |source| HttpBindError { addr, source };
    let listener = std::net::TcpListener::bind(addr).map_err(err)?;
    listener.set_nonblocking(true).map_err(err)?;
    Ok(listener)
}

/// What every handler reads.
#[derive(Clone)]
pub struct WebState {
    pub shared: Shared,
    /// Where the server listens (shown on the page and in `/status`).
    pub http_addr: SocketAddr,
    /// Open `/events` streams, bounded by `page::MAX_EVENT_STREAMS`.
    pub event_streams: Arc<AtomicUsize>,
    /// The records table as last rendered for the event streams.
    pub records_html: Arc<page::RecordsHtmlCache>,
    /// Ends open event streams on shutdown (graceful shutdown waits for them otherwise).
    pub cancel: CancellationToken,
}

/// The running server.
pub struct WebServer {
    listener: std::net::TcpListener,
    shared: Shared,
}

impl WebServer {
    pub fn new(listener: std::net::TcpListener, shared: Shared) -> WebServer {
        WebServer { listener, shared }
    }

    /// Serves until `cancel`, then lets open requests finish for a moment.
    pub async fn run(self, cancel: CancellationToken) -> Result<(), WebError> {
        let http_addr = self.listener.local_addr().map_err(WebError::Listener)?;
        let listener =
            tokio::net::TcpListener::from_std(self.listener).map_err(WebError::Listener)?;
        let state = WebState {
            shared: self.shared,
            http_addr,
            event_streams: Arc::new(AtomicUsize::new(0)),
            records_html: Arc::default(),
            cancel: cancel.clone(),
        };
        info!(listen = %http_addr, "web page, API and metrics listening");
        let listener = BoundedListener {
            inner: listener,
            slots: Arc::new(Semaphore::new(MAX_HTTP_CONNECTIONS)),
        };
        let serve = axum::serve(listener, router(state))
            .with_graceful_shutdown(cancel.clone().cancelled_owned());
        tokio::select! {
            r = serve => r.map_err(WebError::Serve),
            // Graceful shutdown waits for every connection; do not wait forever.
            _ = async { cancel.cancelled().await; tokio::time::sleep(SHUTDOWN_GRACE).await } => Ok(()),
        }
    }
}

/// A listener that holds at most `MAX_HTTP_CONNECTIONS` connections open.
struct BoundedListener {
    inner: tokio::net::TcpListener,
    slots: Arc<Semaphore>,
}

impl axum::serve::Listener for BoundedListener {
    type Io = CountedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (CountedStream, SocketAddr) {
        // The semaphore is never closed.
        let permit = match self.slots.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => std::future::pending().await,
        };
        let (io, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        (
            CountedStream {
                io,
                _permit: permit,
            },
            addr,
        )
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// A connection holding its place among `MAX_HTTP_CONNECTIONS` until dropped.
struct CountedStream {
    io: tokio::net::TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for CountedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Every route. Unknown paths and methods get JSON errors.
pub fn router(state: WebState) -> Router {
    Router::new()
        .route("/", get(page::index))
        .route("/assets/{file}", get(page::asset))
        .route("/health", get(api::health))
        .route("/status", get(api::status))
        .route("/dns/records", get(api::records))
        .route("/dns/cluster", get(api::cluster))
        .route("/console/{kind}/{key}", get(api::console))
        .route("/events", get(page::events))
        .route("/page.json", get(page::page_json))
        .route("/metrics", get(metrics::metrics))
        .route("/openapi.yaml", get(openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(axum::middleware::map_response(security_headers))
}

/// The OpenAPI description of the JSON API, kept beside the code.
pub const OPENAPI: &str = include_str!("openapi.yaml");

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/yaml; charset=utf-8")],
        OPENAPI,
    )
        .into_response()
}

async fn not_found(uri: axum::http::Uri) -> Response {
    api::error(
        StatusCode::NOT_FOUND,
        format!("no such endpoint: {}", uri.path()),
    )
}

async fn method_not_allowed() -> Response {
    api::error(
        StatusCode::METHOD_NOT_ALLOWED,
        "this API is read-only: only GET (and HEAD) are allowed".to_string(),
    )
}

/// Everything is same-origin: no script, style, font or image from elsewhere.
async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

/// Seconds since the Unix epoch (0 for times before it).
pub fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// RFC 3339 in UTC with second precision: `2024-05-01T12:00:00Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Counts an open event stream; the count drops when the guard does.
pub struct StreamSlot(Arc<AtomicUsize>);

impl StreamSlot {
    pub fn take(counter: &Arc<AtomicUsize>, max: usize) -> Option<StreamSlot> {
        let prev = counter.fetch_add(1, Ordering::Relaxed);
        if prev >= max {
            counter.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(StreamSlot(counter.clone()))
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_utc() {
        let at = |s| UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(rfc3339(at(0)), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(at(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(at(1_700_000_000)), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(at(4_102_444_799)), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn stream_slots_are_bounded() {
        let c = Arc::new(AtomicUsize::new(0));
        let a = StreamSlot::take(&c, 2).unwrap();
        let _b = StreamSlot::take(&c, 2).unwrap();
        assert!(StreamSlot::take(&c, 2).is_none());
        drop(a);
        assert!(StreamSlot::take(&c, 2).is_some());
        assert_eq!(c.load(Ordering::Relaxed), 1);
    }
}

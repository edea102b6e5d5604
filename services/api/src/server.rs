//! Serving the router over HTTP/1.1 with hyper directly, because `axum::serve` can set neither a
//! header-read timeout nor a connection cap:
//!
//! - each connection must send a request's headers within `http.header_read_timeout_ms`,
//!   counted from its start or from the end of its previous response (so an idle keep-alive
//!   connection is closed after it too), else it is closed;
//! - at most `http.max_connections` connections are served at once; one more is answered
//!   `503` with `Retry-After` and closed at once, never left waiting;
//! - a connection buffers at most [`MAX_CONNECTION_BUFFER`] bytes of an unparsed request head;
//! - on shutdown the listener closes, idle connections close, in-flight requests finish (up to
//!   [`DRAIN_TIMEOUT`]).
//!
//! At start [`raise_open_files_limit`] lifts the open-files soft limit to the hard limit, and
//! [`connection_cap`] keeps the connection cap below it, so the process never runs out of file
//! descriptors ("Too many open files") for the broker connection or the cap's own 503s.
//!
//! HTTP/2 is not served: no client of this API speaks cleartext HTTP/2, and hyper's
//! header-read timeout is HTTP/1's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Largest unparsed request head (and read buffer) one connection may hold, bytes.
pub const MAX_CONNECTION_BUFFER: usize = 16 * 1024;
/// How long in-flight requests may take to finish after a shutdown signal.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);
/// File descriptors kept out of the connection cap: the broker connections, the log, the
/// runtime, and the connections being refused with 503.
pub const RESERVED_FDS: u64 = 128;
/// Connections refused with 503 that may linger at once, draining what the client sent so it
/// reads the answer instead of a reset.
const REFUSING_MAX: usize = 64;
/// How long a refused connection waits for its request, and then drains it.
const REFUSING_LINGER: Duration = Duration::from_millis(250);

/// How the listener serves connections.
#[derive(Debug, Clone)]
pub struct ServeLimits {
    /// Time to send a request's headers (and keep-alive idle time).
    pub header_read_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

/// Raises the open-files soft limit to the hard limit; returns the soft limit now in force
/// (`None` if it cannot be read).
pub fn raise_open_files_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open-files limit");
            rlimit::Resource::NOFILE.get().ok().map(|(soft, _)| soft)
        }
    }
}

/// The connection cap in force: `configured`, lowered to fit `open_files` (the soft limit)
/// minus [`RESERVED_FDS`].
pub fn connection_cap(configured: usize, open_files: Option<u64>) -> usize {
    let Some(limit) = open_files else {
        return configured;
    };
    let fits = usize::try_from(limit.saturating_sub(RESERVED_FDS).max(1)).unwrap_or(usize::MAX);
    if fits < configured {
        tracing::warn!(
            configured,
            open_files_limit = limit,
            max_connections = fits,
            "http.max_connections lowered to fit the open-files limit"
        );
    }
    configured.min(fits)
}

/// Serves `app` on `listener` until `shutdown`, then drains.
///
/// # Errors
/// None yet: accept errors are logged and retried; the signature leaves room for setup errors.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServeLimits,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let refusing = Arc::new(Semaphore::new(REFUSING_MAX));
    let busy: Arc<[u8]> = busy_response(limits.max_connections).into();
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_CONNECTION_BUFFER);
    let mut last_warning: Option<Instant> = None;
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    accept_failed(&e, &mut last_warning).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refuse(stream, &busy, &refusing);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        crate::metrics::connection_opened();
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            crate::metrics::connection_closed();
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(DRAIN_TIMEOUT) => {
            tracing::warn!(timeout_s = DRAIN_TIMEOUT.as_secs(), "requests still in flight at shutdown");
        }
    }
    Ok(())
}

/// Answers 503 on a connection above the cap and closes it. If few are being refused at once,
/// it first waits briefly for the request (an HTTP client takes an answer that comes before its
/// request for a broken connection, not for a 503) and afterwards drains what the client sent
/// (so it reads the 503 rather than a reset); otherwise it answers and closes at once.
fn refuse(mut stream: TcpStream, busy: &Arc<[u8]>, refusing: &Arc<Semaphore>) {
    crate::metrics::connection_refused();
    let Ok(permit) = refusing.clone().try_acquire_owned() else {
        // A fresh socket's send buffer is empty: the short answer fits without waiting.
        let _ = stream.try_write(busy);
        return;
    };
    let busy = busy.clone();
    tokio::spawn(async move {
        let _permit = permit;
        let mut sink = [0u8; 4096];
        let deadline = tokio::time::Instant::now() + REFUSING_LINGER;
        let _ = tokio::time::timeout_at(deadline, stream.readable()).await;
        let _ = stream.try_read(&mut sink);
        let _ = stream.try_write(&busy);
        let _ = stream.shutdown().await;
        let _ = tokio::time::timeout_at(deadline + REFUSING_LINGER, async {
            while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
    });
}

/// The raw 503 written to a connection above the cap.
fn busy_response(max_connections: usize) -> Vec<u8> {
    let body = serde_json::json!({
        "type": "https://loadtest.dev/problems/too-many-connections",
        "title": "Service busy",
        "status": 503,
        "detail": format!(
            "this API replica serves {max_connections} connections at once \
             (limit http.max_connections); retry"
        ),
    })
    .to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// An accept error: out of file descriptors is logged (at most every 10 s) and waited out
/// briefly, so the loop does not spin; a connection reset before accept is ignored.
async fn accept_failed(e: &std::io::Error, last_warning: &mut Option<Instant>) {
    use std::io::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused
    ) {
        return;
    }
    if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
        tracing::warn!(error = %e, "accepting a connection failed");
        *last_warning = Some(Instant::now());
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_fits_below_the_open_files_limit() {
        assert_eq!(connection_cap(4096, Some(20_000)), 4096);
        assert_eq!(
            connection_cap(4096, Some(1024)),
            1024 - RESERVED_FDS as usize
        );
        assert_eq!(connection_cap(4096, Some(10)), 1);
        assert_eq!(connection_cap(50, None), 50);
    }

    #[test]
    fn the_busy_answer_is_a_complete_http_response() {
        let r = String::from_utf8(busy_response(7)).expect("utf-8");
        let (head, body) = r.split_once("\r\n\r\n").expect("head and body");
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains("retry-after: 1"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!(v["status"], 503);
        assert!(v["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("http.max_connections"));
    }
}

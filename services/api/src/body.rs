//! Request bodies under limits. Handlers authenticate from the headers first and only then read
//! the body through [`Bodies::read`], which bounds it by size (`http.body_limit`: 413), by time
//! (`http.body_read_timeout_ms`: 408) and by memory: the bytes buffered at once across all
//! requests (`http.max_buffered_body_bytes`: 503) and per client
//! (`http.max_buffered_body_bytes_per_client`: 429) are reserved as they arrive and released when
//! the handler is done. A `Content-Length` over the limit is answered 413 by
//! [`content_length_guard`] before anything else, without reading a byte of the body.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::CONTENT_LENGTH;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;

use crate::error::ApiError;
use crate::settings::HttpSettings;

/// Reads request bodies within the limits of [`HttpSettings`].
#[derive(Debug)]
pub struct Bodies {
    limit: usize,
    timeout: Duration,
    budget: Arc<Budget>,
}

/// Body bytes buffered at once: in total and per client.
#[derive(Debug)]
struct Budget {
    total_max: usize,
    per_client_max: usize,
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    total: usize,
    by_client: HashMap<String, usize>,
}

/// Body bytes reserved for one request; given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<Budget>,
    client: String,
    bytes: usize,
}

impl Bodies {
    /// The limits of `http`.
    pub fn new(http: &HttpSettings) -> Self {
        Self {
            limit: http.body_limit,
            timeout: http.body_read_timeout(),
            budget: Arc::new(Budget {
                total_max: http.max_buffered_body_bytes,
                per_client_max: http.max_buffered_body_bytes_per_client,
                held: Mutex::new(Held::default()),
            }),
        }
    }

    /// The largest body accepted, bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Body bytes buffered now, across all requests.
    pub fn buffered(&self) -> usize {
        self.budget.lock().total
    }

    /// Reads `body` for `client` (an API key's id, or a run). Returns the bytes and their
    /// reservation, to be held until the request is answered.
    ///
    /// # Errors
    /// 413 past `http.body_limit`, 408 past `http.body_read_timeout_ms`, 429 when `client` holds
    /// `http.max_buffered_body_bytes_per_client`, 503 when all requests hold
    /// `http.max_buffered_body_bytes`, 400 when the client breaks off.
    pub async fn read(&self, body: Body, client: &str) -> Result<(Bytes, Reservation), ApiError> {
        let mut reservation = Reservation {
            budget: self.budget.clone(),
            client: client.to_string(),
            bytes: 0,
        };
        if axum::body::HttpBody::size_hint(&body)
            .exact()
            .is_some_and(|n| n > self.limit as u64)
        {
            return Err(too_large(self.limit));
        }
        // The pieces as they came (no copying while the body arrives), joined once at the end.
        let mut pieces: Vec<Bytes> = Vec::new();
        let mut received = 0usize;
        let mut body = body;
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
                Err(_) => {
                    crate::metrics::limited("body-timeout");
                    return Err(ApiError::BodyTimeout(format!(
                        "the body did not arrive within {} ms (limit http.body_read_timeout_ms; \
                         {received} bytes received)",
                        self.timeout.as_millis(),
                    )));
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    return Err(ApiError::Invalid {
                        field: "$".into(),
                        detail: format!("reading the body failed: {e}"),
                    })
                }
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if received + data.len() > self.limit {
                return Err(too_large(self.limit));
            }
            reservation.grow(data.len())?;
            received += data.len();
            pieces.push(data);
        }
        let bytes = match pieces.len() {
            0 => Bytes::new(),
            1 => pieces.pop().unwrap_or_default(),
            _ => {
                let mut joined = BytesMut::with_capacity(received);
                for p in pieces.drain(..) {
                    joined.extend_from_slice(&p);
                }
                joined.freeze()
            }
        };
        Ok((bytes, reservation))
    }
}

impl Budget {
    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Reservation {
    /// Reserves `n` more bytes, or answers 429 (this client's share) / 503 (everyone's).
    fn grow(&mut self, n: usize) -> Result<(), ApiError> {
        let budget = &self.budget;
        let mut held = budget.lock();
        let mine = held.by_client.get(&self.client).copied().unwrap_or(0);
        if mine + n > budget.per_client_max {
            drop(held);
            crate::metrics::limited("buffered-bytes-limit");
            return Err(ApiError::Limited {
                problem: "buffered-bytes-limit",
                detail: format!(
                    "{} has {mine} body bytes in flight (limit \
                     http.max_buffered_body_bytes_per_client = {}); retry",
                    self.client, budget.per_client_max
                ),
                retry_after_s: 1,
            });
        }
        if held.total + n > budget.total_max {
            drop(held);
            crate::metrics::limited("server-busy");
            return Err(ApiError::Busy {
                detail: format!(
                    "this API replica is buffering the most request body bytes it may (limit \
                     http.max_buffered_body_bytes = {}); retry",
                    budget.total_max
                ),
                retry_after_s: 1,
            });
        }
        held.total += n;
        *held.by_client.entry(self.client.clone()).or_default() += n;
        self.bytes += n;
        Ok(())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.bytes == 0 {
            return;
        }
        let mut held = self.budget.lock();
        held.total = held.total.saturating_sub(self.bytes);
        if let Some(mine) = held.by_client.get_mut(&self.client) {
            *mine = mine.saturating_sub(self.bytes);
            if *mine == 0 {
                held.by_client.remove(&self.client);
            }
        }
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::TooLarge(format!(
        "the body is larger than {limit} bytes (limit http.body_limit)"
    ))
}

/// Middleware: a request whose `Content-Length` is over the body limit gets 413 at once,
/// before authentication and before any of its body is read.
pub async fn content_length_guard(
    State(limit): State<usize>,
    request: Request,
    next: Next,
) -> Response {
    let announced = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(n) = announced.filter(|n| *n > limit as u64) {
        return ApiError::TooLarge(format!(
            "Content-Length {n} is larger than {limit} bytes (limit http.body_limit)"
        ))
        .into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bodies(limit: usize, per_client: usize, total: usize, timeout_ms: u64) -> Bodies {
        Bodies {
            limit,
            timeout: Duration::from_millis(timeout_ms),
            budget: Arc::new(Budget {
                total_max: total,
                per_client_max: per_client,
                held: Mutex::new(Held::default()),
            }),
        }
    }

    #[tokio::test]
    async fn the_budget_is_held_until_the_reservation_is_dropped() {
        let b = bodies(100, 150, 200, 1000);
        let (x, rx) = b.read(Body::from(vec![1u8; 100]), "a").await.expect("a");
        assert_eq!(x.len(), 100);
        let (_, ry) = b.read(Body::from(vec![1u8; 40]), "a").await.expect("a");
        // a holds 140 of its 150.
        match b.read(Body::from(vec![1u8; 20]), "a").await {
            Err(ApiError::Limited { problem, .. }) => assert_eq!(problem, "buffered-bytes-limit"),
            other => panic!("expected 429, got {other:?}"),
        }
        let (_, rb) = b.read(Body::from(vec![1u8; 60]), "b").await.expect("b");
        // 200 held in total.
        match b.read(Body::from(vec![1u8; 1]), "c").await {
            Err(ApiError::Busy { retry_after_s, .. }) => assert_eq!(retry_after_s, 1),
            other => panic!("expected 503, got {other:?}"),
        }
        assert_eq!(b.buffered(), 200);
        drop((rx, ry, rb));
        assert_eq!(b.buffered(), 0);
        assert!(b.budget.lock().by_client.is_empty());
    }

    #[tokio::test]
    async fn too_large_and_too_slow() {
        let b = bodies(10, 100, 100, 50);
        assert!(matches!(
            b.read(Body::from(vec![0u8; 11]), "a").await,
            Err(ApiError::TooLarge(_))
        ));
        // A chunked body that never ends.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        tx.send(Ok(Bytes::from_static(b"{"))).await.expect("send");
        let stream = tokio_stream_from(rx);
        match b.read(Body::from_stream(stream), "a").await {
            Err(ApiError::BodyTimeout(d)) => {
                assert!(d.contains("http.body_read_timeout_ms"), "{d}")
            }
            other => panic!("expected 408, got {other:?}"),
        }
        drop(tx);
        assert_eq!(b.buffered(), 0);
    }

    fn tokio_stream_from(
        mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
    ) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}

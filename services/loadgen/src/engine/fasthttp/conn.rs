//! One user's connection: the request written, the response read, the connection kept for the
//! next request when it may be. HTTP/1.1 here; HTTP/2 in [`super::h2conn`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt as _;

use super::connect::{io_error, Connector, Protocol, Stream};
use super::error::FastError;
use super::framing::{read_body, read_more};
use super::h2conn::H2Slot;
use super::head::{parse_head, Head, MAX_HEAD};
use super::target::FastTarget;

/// One user's connection: its HTTP/1.1 stream (while open) and read buffer, or its share of
/// the user's HTTP/2 connection (a user with `--h2-streams N` has N lanes sharing one).
#[derive(Debug)]
pub(crate) struct FastConn {
    connector: Arc<Connector>,
    stream: Option<Stream>,
    /// When the last response on `stream` was read.
    last_response: Instant,
    buf: Vec<u8>,
    h2: Arc<H2Slot>,
    /// This lane's handle on the user's HTTP/2 connection, with its generation.
    h2_handle: Option<(h2::client::SendRequest<bytes::Bytes>, u64)>,
}

/// A kept-alive connection idle for this long is checked before reuse (a read that does not
/// wait: one system call). Servers close idle connections after seconds, not within a
/// millisecond, so a user sending back to back skips the check; a close that races the
/// next request anyway is caught by the retry of idempotent requests.
const PROBE_AFTER: Duration = Duration::from_millis(1);

/// How one attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AttemptError {
    /// The connection ended before any byte of the response: on a reused connection the
    /// server closed it meanwhile, and an idempotent request may be sent again. Reported as
    /// [`FastError::Connection`].
    Unanswered,
    /// Anything else.
    Failed(FastError),
    /// The connection opened speaks HTTP/2 (ALPN) and is now the user's HTTP/2 connection
    /// ([`H2Slot`]): the request goes there instead.
    NowHttp2,
}

impl From<FastError> for AttemptError {
    fn from(e: FastError) -> Self {
        AttemptError::Failed(e)
    }
}

impl FastConn {
    /// A user's connection (none open yet), made by `connector`.
    pub(crate) fn new(connector: Arc<Connector>) -> Self {
        Self {
            connector,
            stream: None,
            last_response: Instant::now(),
            buf: Vec::new(),
            h2: Arc::default(),
            h2_handle: None,
        }
    }

    /// Another lane of the same user: its own HTTP/1.1 stream, the same HTTP/2 connection.
    pub(crate) fn lane(&self) -> Self {
        Self {
            connector: Arc::clone(&self.connector),
            stream: None,
            last_response: Instant::now(),
            buf: Vec::new(),
            h2: Arc::clone(&self.h2),
            h2_handle: None,
        }
    }

    /// Sends `target`'s request and reads the whole response; returns the status, the body's
    /// length (bytes, after chunked decoding) and the HTTP version used. Gives up after
    /// `timeout` ([`FastError::Timeout`]); other failures are [`FastError::Connection`]
    /// (connect, write, or the connection closed before the response was complete),
    /// [`FastError::Tls`] (by cause), [`FastError::Http2`] and [`FastError::InvalidResponse`]
    /// (not HTTP/1.x).
    pub(crate) async fn send(
        &mut self,
        target: &FastTarget,
        timeout: Duration,
    ) -> Result<(u16, u64, Protocol), FastError> {
        if self.connector.h2() {
            return match tokio::time::timeout(
                timeout,
                self.h2.send(&mut self.h2_handle, &self.connector, target),
            )
            .await
            {
                Ok(Ok((status, len))) => Ok((status, len, Protocol::Http2)),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(FastError::Timeout),
            };
        }
        match tokio::time::timeout(timeout, self.exchange(target)).await {
            Ok(Ok((status, len, keep_alive, protocol))) => {
                if !keep_alive {
                    self.stream = None;
                }
                self.last_response = Instant::now();
                Ok((status, len, protocol))
            }
            Ok(Err(e)) => {
                self.stream = None;
                Err(e)
            }
            Err(_) => {
                self.stream = None;
                Err(FastError::Timeout)
            }
        }
    }

    /// One request on a checked connection; an idempotent request is sent again on a new
    /// connection when a reused one was closed before any byte of the response came (the
    /// server closed it between the check and the request), as Go's net/http does.
    async fn exchange(
        &mut self,
        target: &FastTarget,
    ) -> Result<(u16, u64, bool, Protocol), FastError> {
        if self.last_response.elapsed() >= PROBE_AFTER
            && self.stream.as_mut().is_some_and(|s| !s.idle_and_open())
        {
            self.stream = None;
        }
        let reused = self.stream.is_some();
        let result = match self.attempt(target).await {
            Err(AttemptError::Unanswered) if reused && target.idempotent => {
                self.stream = None;
                self.attempt(target).await
            }
            other => other,
        };
        match result {
            Ok((status, len, keep_alive)) => Ok((status, len, keep_alive, Protocol::Http1)),
            Err(AttemptError::Unanswered) => Err(FastError::Connection),
            Err(AttemptError::Failed(e)) => Err(e),
            Err(AttemptError::NowHttp2) => {
                let (status, len) = self
                    .h2
                    .send(&mut self.h2_handle, &self.connector, target)
                    .await?;
                Ok((status, len, false, Protocol::Http2))
            }
        }
    }

    async fn attempt(&mut self, target: &FastTarget) -> Result<(u16, u64, bool), AttemptError> {
        let Self {
            connector,
            stream,
            buf,
            h2,
            ..
        } = self;
        let stream = match stream {
            Some(s) => s,
            None => match connector.open(&target.addr).await? {
                (s, Protocol::Http1) => stream.insert(s),
                // The server turned out to speak only HTTP/2: this request and the later ones
                // go over HTTP/2.
                (s, Protocol::Http2) => {
                    h2.adopt(s).await?;
                    return Err(AttemptError::NowHttp2);
                }
            },
        };
        // Bytes left from an earlier response would be a server's error; they are not ours.
        buf.clear();
        // A server may answer and close before it has read the whole request (a 413 for a
        // large body): then the answer, if it can still be read, is the outcome. Over TLS the
        // records are flushed to the socket too.
        let written = match stream.write_all(&target.request).await {
            Ok(()) => stream.flush().await.is_ok(),
            Err(e) => match io_error(&e) {
                FastError::Tls(t) => return Err(FastError::Tls(t).into()),
                _ => false,
            },
        };
        let mut answered = false;
        let head = loop {
            match parse_head(buf, target.head)? {
                Some(h) if (100..200).contains(&h.status) && h.status != 101 => {
                    buf.drain(..h.len);
                }
                Some(h) => break h,
                None if buf.len() > MAX_HEAD => return Err(FastError::InvalidResponse.into()),
                None => {
                    let got = read_more(stream, buf).await;
                    if let Err(FastError::Tls(t)) = got {
                        return Err(FastError::Tls(t).into());
                    }
                    if !matches!(got, Ok(n) if n > 0) {
                        return Err(if buf.is_empty() && !answered {
                            AttemptError::Unanswered
                        } else {
                            FastError::Connection.into()
                        });
                    }
                    answered = true;
                }
            }
        };
        let head = Head {
            keep_alive: head.keep_alive && written,
            ..head
        };
        buf.drain(..head.len);
        let (len, keep_alive) = read_body(stream, buf, head.framing, head.keep_alive).await?;
        buf.clear();
        Ok((head.status, len, keep_alive))
    }
}

#[cfg(test)]
impl Default for FastConn {
    fn default() -> Self {
        Self::new(Arc::new(Connector::plain()))
    }
}

#[cfg(test)]
impl FastConn {
    /// [`FastConn::send`] over plain HTTP/1.1: the status and the body's length.
    pub(super) async fn send_h1(
        &mut self,
        target: &FastTarget,
        timeout: Duration,
    ) -> Result<(u16, u64), FastError> {
        self.send(target, timeout)
            .await
            .map(|(status, len, _)| (status, len))
    }
}

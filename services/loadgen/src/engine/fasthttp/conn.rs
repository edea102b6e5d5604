//! One user's connection: the request written, the response read, the connection kept for the
//! next request when it may be.

use std::time::Duration;

use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

use super::error::FastError;
use super::framing::{read_body, read_more};
use super::head::{parse_head, Head, MAX_HEAD};
use super::target::FastTarget;

/// One user's connection: the socket (while open) and its read buffer.
#[derive(Debug, Default)]
pub(crate) struct FastConn {
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

/// How one attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AttemptError {
    /// The connection ended before any byte of the response: on a reused connection the
    /// server closed it meanwhile, and an idempotent request may be sent again. Reported as
    /// [`FastError::Connection`].
    Unanswered,
    /// Anything else.
    Failed(FastError),
}

impl From<FastError> for AttemptError {
    fn from(e: FastError) -> Self {
        AttemptError::Failed(e)
    }
}

impl FastConn {
    /// Sends `target`'s request and reads the whole response; returns the status and the
    /// body's length (bytes, after chunked decoding). Gives up after `timeout`
    /// ([`FastError::Timeout`]); other failures are [`FastError::Connection`] (connect, write,
    /// or the connection closed before the response was complete) and
    /// [`FastError::InvalidResponse`] (not HTTP/1.x).
    pub(crate) async fn send(
        &mut self,
        target: &FastTarget,
        timeout: Duration,
    ) -> Result<(u16, u64), FastError> {
        match tokio::time::timeout(timeout, self.exchange(target)).await {
            Ok(Ok((status, len, keep_alive))) => {
                if !keep_alive {
                    self.stream = None;
                }
                Ok((status, len))
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
    async fn exchange(&mut self, target: &FastTarget) -> Result<(u16, u64, bool), FastError> {
        if self.stream.as_ref().is_some_and(|s| !idle_and_open(s)) {
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
        result.map_err(|e| match e {
            AttemptError::Unanswered => FastError::Connection,
            AttemptError::Failed(e) => e,
        })
    }

    async fn attempt(&mut self, target: &FastTarget) -> Result<(u16, u64, bool), AttemptError> {
        let Self { stream, buf } = self;
        let stream = match stream {
            Some(s) => s,
            None => {
                let s = TcpStream::connect(&target.addr)
                    .await
                    .map_err(|_| FastError::Connection)?;
                let _ = s.set_nodelay(true);
                stream.insert(s)
            }
        };
        // Bytes left from an earlier response would be a server's error; they are not ours.
        buf.clear();
        // A server may answer and close before it has read the whole request (a 413 for a
        // large body): then the answer, if it can still be read, is the outcome.
        let written = stream.write_all(&target.request).await.is_ok();
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

/// Whether a kept-alive connection can be reused: the server has neither closed it nor sent
/// anything since the last response (a non-blocking read finds nothing to read).
fn idle_and_open(stream: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

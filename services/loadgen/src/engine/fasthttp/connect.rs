//! Opening a user's connection: TCP, then TLS for `https://` (ALPN picks HTTP/1.1 or HTTP/2),
//! as one [`Stream`] type the HTTP/1.1 and HTTP/2 code read and write alike.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::error::FastError;
use super::tls::{TlsClient, TlsFailure, TlsOptions};

/// A user's byte stream to the server: plain TCP or TLS over TCP.
#[derive(Debug)]
pub(super) enum Stream {
    /// `http://`.
    Plain(TcpStream),
    /// `https://` (boxed: a TLS session is about 1 KB of state besides its buffers).
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    /// Whether a kept-alive connection can be reused: the server has neither closed it nor
    /// sent anything since the last response (a read that does not wait finds nothing). On a
    /// TLS stream the read also takes in records that carry no data (TLS 1.3 session tickets).
    pub(super) fn idle_and_open(&mut self) -> bool {
        let mut probe = [0u8; 1];
        match self {
            Stream::Plain(s) => {
                matches!(s.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
            Stream::Tls(s) => {
                let mut cx = Context::from_waker(futures::task::noop_waker_ref());
                let mut buf = ReadBuf::new(&mut probe);
                matches!(
                    Pin::new(s.as_mut()).poll_read(&mut cx, &mut buf),
                    Poll::Pending
                )
            }
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The failure of an I/O call on a [`Stream`]: its TLS cause when it has one, else
/// [`FastError::Connection`].
pub(super) fn io_error(e: &io::Error) -> FastError {
    TlsFailure::of_io(e).map_or(FastError::Connection, FastError::Tls)
}

/// The HTTP version a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// HTTP/1.1.
    Http1,
    /// HTTP/2.
    Http2,
}

/// How a run's users connect, shared by all of them: TLS settings (for `https://`) and which
/// HTTP version to speak.
#[derive(Debug)]
pub(crate) struct Connector {
    tls: Option<TlsClient>,
    /// `--http2`: HTTP/2 on every connection (ALPN `h2` over TLS, prior knowledge over TCP).
    http2: bool,
    /// The server refused ALPN `http/1.1` for want of a common protocol: it speaks only h2,
    /// so every later connection offers `h2`.
    h2_only: AtomicBool,
    /// Streams each user keeps in flight on its HTTP/2 connection.
    pub(crate) h2_streams: usize,
}

static INSECURE_WARNING: Once = Once::new();
static H2_ONLY_NOTE: Once = Once::new();

impl Connector {
    /// The connector for targets under `host` (`http://` or `https://`). `--insecure` is
    /// warned about once, on stderr. Errors: the TLS options do not load (see
    /// [`TlsClient::new`]).
    pub(crate) fn new(
        host: &reqwest::Url,
        tls: &TlsOptions,
        http2: bool,
        h2_streams: usize,
    ) -> anyhow::Result<Self> {
        let tls = if host.scheme() == "https" {
            if tls.insecure {
                INSECURE_WARNING.call_once(|| {
                    eprintln!(
                        "warning: --insecure: the server's certificate is not verified (anyone on the path could pose as {})",
                        host.host_str().unwrap_or("the server")
                    );
                });
            }
            Some(TlsClient::new(tls, host.host_str().unwrap_or_default())?)
        } else {
            None
        };
        Ok(Self {
            tls,
            http2,
            h2_only: AtomicBool::new(false),
            h2_streams: h2_streams.max(1),
        })
    }

    /// A connector for plain `http://` with HTTP/1.1 (the tests' default).
    #[cfg(test)]
    pub(crate) fn plain() -> Self {
        Self {
            tls: None,
            http2: false,
            h2_only: AtomicBool::new(false),
            h2_streams: 1,
        }
    }

    /// Whether new connections speak HTTP/2.
    pub(super) fn h2(&self) -> bool {
        self.http2 || self.h2_only.load(Ordering::Relaxed)
    }

    /// Opens a connection to `addr` (`host:port`) and returns it with the HTTP version to speak
    /// on it. Over TLS the version is ALPN's: a server that turns down `http/1.1` for want of a
    /// common protocol is asked again with `h2`, and remembered as HTTP/2-only.
    pub(super) async fn open(&self, addr: &str) -> Result<(Stream, Protocol), FastError> {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|_| FastError::Connection)?;
        let _ = tcp.set_nodelay(true);
        let Some(tls) = &self.tls else {
            let protocol = if self.h2() {
                Protocol::Http2
            } else {
                Protocol::Http1
            };
            return Ok((Stream::Plain(tcp), protocol));
        };
        let h2 = self.h2();
        let connector = if h2 { &tls.h2 } else { &tls.h1 };
        match connector.connect(tls.name.clone(), tcp).await {
            Ok(s) => {
                let protocol = if s.get_ref().1.alpn_protocol() == Some(b"h2") || h2 {
                    Protocol::Http2
                } else {
                    Protocol::Http1
                };
                Ok((Stream::Tls(Box::new(s)), protocol))
            }
            Err(e) => match io_error(&e) {
                FastError::Tls(TlsFailure::NoProtocol) if !h2 => {
                    self.h2_only.store(true, Ordering::Relaxed);
                    H2_ONLY_NOTE.call_once(|| {
                        eprintln!("note: the server offers only HTTP/2 (ALPN h2); using HTTP/2");
                    });
                    let tcp = TcpStream::connect(addr)
                        .await
                        .map_err(|_| FastError::Connection)?;
                    let _ = tcp.set_nodelay(true);
                    let s = tls
                        .h2
                        .connect(tls.name.clone(), tcp)
                        .await
                        .map_err(|e| io_error(&e))?;
                    Ok((Stream::Tls(Box::new(s)), Protocol::Http2))
                }
                other => Err(other),
            },
        }
    }
}

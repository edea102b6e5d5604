//! The users' fast path for `http://` targets: one HTTP/1.1 keep-alive connection per user,
//! driven by hyper directly (no pool, no per-request URL parsing; the request line and `Host`
//! header are prepared once per request kind). `https://` targets go through `reqwest`.
//!
//! A connection that fails, times out or is closed by the server is dropped and the next
//! request opens a new one. Redirects are not followed (a 3xx counts as a success unless the
//! scenario expects another status), as in wrk and oha.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderValue, HOST, USER_AGENT};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use reqwest::Url;

/// Where a request goes on the fast path, prepared once.
#[derive(Debug, Clone)]
pub struct FastTarget {
    /// `host:port` to connect to.
    pub addr: String,
    /// The request target in origin form (`/path?query`).
    pub uri: Uri,
    /// The `Host` header.
    pub host: HeaderValue,
}

impl FastTarget {
    /// The fast-path target of `url`, or `None` when it is not plain `http://`.
    pub fn of(url: &Url) -> Option<Self> {
        if url.scheme() != "http" {
            return None;
        }
        let host = url.host_str()?;
        let port = url.port_or_known_default()?;
        let addr = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let authority = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        let mut target = url.path().to_string();
        if let Some(q) = url.query() {
            target.push('?');
            target.push_str(q);
        }
        Some(Self {
            addr,
            uri: target.parse().ok()?,
            host: HeaderValue::from_str(&authority).ok()?,
        })
    }
}

/// Why a fast-path request failed, in the words `reqwest` errors are reported with.
pub type FastError = &'static str;

/// One user's connection.
#[derive(Default)]
pub struct FastConn {
    sender: Option<SendRequest<Full<Bytes>>>,
}

const UA: HeaderValue = HeaderValue::from_static(concat!("loadgen/", env!("CARGO_PKG_VERSION")));

impl FastConn {
    async fn connect(addr: &str) -> Result<SendRequest<Full<Bytes>>, FastError> {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|_| "connection error")?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|_| "connection error")?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection closed with an error");
            }
        });
        Ok(sender)
    }

    /// Sends `method` to `target` with `headers` and `body`, reads the whole response body;
    /// returns the status and the body's length (bytes). Gives up after `timeout`.
    pub async fn send(
        &mut self,
        target: &FastTarget,
        method: &hyper::Method,
        headers: &hyper::HeaderMap,
        body: Option<&Bytes>,
        timeout: Duration,
    ) -> Result<(u16, u64), FastError> {
        match tokio::time::timeout(timeout, self.send_inner(target, method, headers, body)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => {
                self.sender = None;
                Err(e)
            }
            Err(_) => {
                self.sender = None;
                Err("timeout")
            }
        }
    }

    async fn send_inner(
        &mut self,
        target: &FastTarget,
        method: &hyper::Method,
        headers: &hyper::HeaderMap,
        body: Option<&Bytes>,
    ) -> Result<(u16, u64), FastError> {
        let sender = match &mut self.sender {
            Some(s) if !s.is_closed() => s,
            _ => self.sender.insert(Self::connect(&target.addr).await?),
        };
        sender.ready().await.map_err(|_| "connection error")?;
        let mut req = Request::new(Full::new(body.cloned().unwrap_or_default()));
        *req.method_mut() = method.clone();
        *req.uri_mut() = target.uri.clone();
        let h = req.headers_mut();
        h.insert(HOST, target.host.clone());
        h.insert(USER_AGENT, UA);
        for (k, v) in headers {
            h.insert(k, v.clone());
        }
        let mut resp = sender.send_request(req).await.map_err(|e| {
            if e.is_canceled() || e.is_closed() {
                "connection error"
            } else {
                "request error"
            }
        })?;
        let status = resp.status().as_u16();
        let mut len = 0u64;
        while let Some(frame) = resp.body_mut().frame().await {
            let frame = frame.map_err(|_| "body error")?;
            if let Some(d) = frame.data_ref() {
                len += d.len() as u64;
            }
        }
        Ok((status, len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that answers each connection's first request with `Connection: close` and
    /// closes: every request still succeeds (the response before the close is read, the next
    /// request reconnects).
    #[tokio::test]
    async fn survives_servers_that_close() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = sock.read(&mut buf).await;
                let _ = sock
                    .write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
                    .await;
            }
        });
        let target =
            FastTarget::of(&Url::parse(&format!("http://{addr}/x")).expect("url")).expect("http");
        let mut conn = FastConn::default();
        for _ in 0..3 {
            let r = conn
                .send(
                    &target,
                    &hyper::Method::GET,
                    &hyper::HeaderMap::new(),
                    None,
                    Duration::from_secs(5),
                )
                .await;
            assert_eq!(r, Ok((201, 5)));
        }
        // Nothing listening: a connection error, not a hang.
        drop(conn);
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let gone = closed.local_addr().expect("addr");
        drop(closed);
        let target =
            FastTarget::of(&Url::parse(&format!("http://{gone}/")).expect("url")).expect("http");
        let r = FastConn::default()
            .send(
                &target,
                &hyper::Method::GET,
                &hyper::HeaderMap::new(),
                None,
                Duration::from_secs(5),
            )
            .await;
        assert_eq!(r, Err("connection error"));
    }

    #[test]
    fn targets() {
        let t =
            FastTarget::of(&Url::parse("http://example.com/a/b?x=1").expect("url")).expect("http");
        assert_eq!(t.addr, "example.com:80");
        assert_eq!(t.uri, "/a/b?x=1");
        assert_eq!(t.host, "example.com");
        let t = FastTarget::of(&Url::parse("http://127.0.0.1:8080").expect("url")).expect("http");
        assert_eq!(
            (t.addr.as_str(), t.host.to_str().ok()),
            ("127.0.0.1:8080", Some("127.0.0.1:8080"))
        );
        assert_eq!(t.uri, "/");
        let t = FastTarget::of(&Url::parse("http://[::1]:81/x").expect("url")).expect("v6");
        assert_eq!(t.addr, "[::1]:81");
        assert!(FastTarget::of(&Url::parse("https://example.com/").expect("url")).is_none());
    }
}

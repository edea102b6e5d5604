//! The users' fast path for `http://` targets: one HTTP/1.1 keep-alive connection per user,
//! with the whole request (request line, headers, body) serialized once per request kind and
//! written as one buffer, and the response head parsed in place with `httparse` (the parser
//! hyper uses). No per-request allocation, no connection task, no channel between tasks: the
//! user's own task writes the request and reads the response, which is what makes loadgen as
//! fast as wrk. `https://` targets go through `reqwest`.
//!
//! Response framing follows RFC 9112 §6.3: no body for `HEAD`, 1xx, 204 and 304; else a
//! `Transfer-Encoding` whose last coding is `chunked` (decoded, trailers skipped; any other
//! last coding: the body runs to the end of the connection), else `Content-Length` (differing
//! values are an invalid response), else the body runs to the end of the connection. 1xx
//! interim responses other than 101 are skipped; a 101 ends the connection's use. Limits are
//! hyper's: 100 headers, a head of 400 KiB, chunk-size lines of 16 KiB.
//!
//! A connection that fails, times out, answers `Connection: close` (or HTTP/1.0 without
//! keep-alive) or is closed by the server is dropped and the next request opens a new one.
//! Before a kept-alive connection is reused it is checked without blocking: if the server has
//! closed it while idle (keep-alive timeouts), or sent bytes nobody asked for, a new one is
//! opened, so idle closes are not counted as failures and stray bytes are not read as the next
//! response. A server that answers early and closes while the request body is still being
//! written (a 413 for a large upload) gets its answer counted, not a connection error.
//! Redirects are not followed (a 3xx counts as a success unless the scenario expects another
//! status), as in wrk and oha.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, CONTENT_LENGTH, HOST, TRANSFER_ENCODING, USER_AGENT};
use reqwest::{Method, Url};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// A request on the fast path, prepared once: where it goes and its bytes on the wire.
#[derive(Debug, Clone)]
pub struct FastTarget {
    /// `host:port` to connect to.
    pub addr: String,
    /// The whole HTTP/1.1 request: request line, `Host`, `User-Agent` (unless the scenario
    /// sets them), the scenario's headers, `Content-Length` (when there is a body, and always
    /// for POST/PUT/PATCH) and the body.
    pub request: Bytes,
    /// A `HEAD` request: the response has no body whatever its headers say.
    pub head: bool,
    /// An idempotent method (RFC 9110 §9.2.2: GET, HEAD, OPTIONS, TRACE, PUT, DELETE): sent
    /// again, once, when a reused connection turns out closed before any response byte.
    pub idempotent: bool,
}

impl FastTarget {
    /// The fast-path request for `method url` with `headers` and `body`, or `None` when the URL
    /// is not plain `http://`. A `Content-Length` or `Transfer-Encoding` among `headers` is
    /// ignored: the body's framing is always `Content-Length` of the body given.
    pub fn of(
        url: &Url,
        method: &Method,
        headers: &HeaderMap,
        body: Option<&Bytes>,
    ) -> Option<Self> {
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
        let body: &[u8] = body.map(|b| b.as_ref()).unwrap_or_default();
        let mut req = Vec::with_capacity(256 + body.len());
        req.extend_from_slice(method.as_str().as_bytes());
        req.push(b' ');
        req.extend_from_slice(url.path().as_bytes());
        if let Some(q) = url.query() {
            req.push(b'?');
            req.extend_from_slice(q.as_bytes());
        }
        req.extend_from_slice(b" HTTP/1.1\r\n");
        let mut header = |name: &[u8], value: &[u8]| {
            req.extend_from_slice(name);
            req.extend_from_slice(b": ");
            req.extend_from_slice(value);
            req.extend_from_slice(b"\r\n");
        };
        if !headers.contains_key(HOST) {
            header(b"host", authority.as_bytes());
        }
        if !headers.contains_key(USER_AGENT) {
            header(b"user-agent", UA.as_bytes());
        }
        for (name, value) in headers {
            if name != CONTENT_LENGTH && name != TRANSFER_ENCODING {
                header(name.as_str().as_bytes(), value.as_bytes());
            }
        }
        if !body.is_empty() || matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
            header(b"content-length", body.len().to_string().as_bytes());
        }
        req.extend_from_slice(b"\r\n");
        req.extend_from_slice(body);
        Some(Self {
            addr,
            request: Bytes::from(req),
            head: *method == Method::HEAD,
            idempotent: method.is_idempotent(),
        })
    }
}

/// Why a fast-path request failed, in the words `reqwest` errors are reported with.
pub type FastError = &'static str;

const UA: &str = concat!("loadgen/", env!("CARGO_PKG_VERSION"));

/// Most response-head bytes (and trailer bytes) before the response is called invalid
/// (hyper's default read buffer limit).
const MAX_HEAD: usize = 400 * 1024;
/// Most headers in a response head (hyper's default).
const MAX_HEADERS: usize = 100;
/// Longest chunk-size line, extensions included (hyper's limit).
const MAX_CHUNK_LINE: usize = 16 * 1024;
/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 16 * 1024;

/// One user's connection: the socket (while open) and its read buffer.
#[derive(Default)]
pub struct FastConn {
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

/// How a response's body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

/// A parsed response head.
#[derive(Debug, Clone, Copy)]
struct Head {
    status: u16,
    /// Bytes of the head, status line to the empty line.
    len: usize,
    framing: Framing,
    /// The connection may be reused after the body.
    keep_alive: bool,
}

impl FastConn {
    /// Sends `target`'s request and reads the whole response; returns the status and the
    /// body's length (bytes, after chunked decoding). Gives up after `timeout` (`"timeout"`);
    /// other failures are `"connection error"` (connect, write, or the connection closed
    /// before the response was complete) and `"invalid response"` (not HTTP/1.x).
    pub async fn send(
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
                Err("timeout")
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
            Err(UNANSWERED) if reused && target.idempotent => {
                self.stream = None;
                self.attempt(target).await
            }
            other => other,
        };
        result.map_err(|e| {
            if e == UNANSWERED {
                "connection error"
            } else {
                e
            }
        })
    }

    async fn attempt(&mut self, target: &FastTarget) -> Result<(u16, u64, bool), FastError> {
        let Self { stream, buf } = self;
        let stream = match stream {
            Some(s) => s,
            None => {
                let s = TcpStream::connect(&target.addr)
                    .await
                    .map_err(|_| "connection error")?;
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
                None if buf.len() > MAX_HEAD => return Err("invalid response"),
                None => {
                    let got = read_more(stream, buf).await;
                    if !matches!(got, Ok(n) if n > 0) {
                        return Err(if buf.is_empty() && !answered {
                            UNANSWERED
                        } else {
                            "connection error"
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
        let (len, keep_alive) = match head.framing {
            Framing::Empty => (0, head.keep_alive),
            Framing::Length(n) => {
                let mut have = buf.len() as u64;
                while have < n {
                    buf.clear();
                    let got = read_more(stream, buf).await?;
                    if got == 0 {
                        return Err("connection error");
                    }
                    have += got as u64;
                }
                (n, head.keep_alive)
            }
            Framing::Chunked => {
                let mut decoder = Chunked::default();
                loop {
                    let (used, done) = decoder.feed(buf)?;
                    buf.drain(..used);
                    if done {
                        break;
                    }
                    if read_more(stream, buf).await? == 0 {
                        return Err("connection error");
                    }
                }
                (decoder.body_len, head.keep_alive)
            }
            Framing::UntilClose => {
                let mut have = buf.len() as u64;
                loop {
                    buf.clear();
                    match read_more(stream, buf).await? {
                        0 => break,
                        got => have += got as u64,
                    }
                }
                (have, false)
            }
        };
        buf.clear();
        Ok((head.status, len, keep_alive))
    }
}

/// The connection ended before any byte of the response (reported as `connection error`).
const UNANSWERED: FastError = "connection closed before any response";

/// Whether a kept-alive connection can be reused: the server has neither closed it nor sent
/// anything since the last response (a non-blocking read finds nothing to read).
fn idle_and_open(stream: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// Reads what the socket has into `buf`'s spare room; 0 at the end of the stream.
async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<usize, FastError> {
    buf.reserve(READ_CHUNK);
    stream.read_buf(buf).await.map_err(|_| "connection error")
}

/// Parses the response head at the start of `buf`: `None` while it is incomplete.
fn parse_head(buf: &[u8], head_request: bool) -> Result<Option<Head>, FastError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Ok(httparse::Status::Complete(_)) | Err(_) => return Err("invalid response"),
    };
    let status = match resp.code {
        Some(code @ 100..) => code,
        _ => return Err("invalid response"),
    };
    let http11 = resp.version == Some(1);
    let (mut length, mut coding, mut close, mut keep) = (None, None, false, false);
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = content_length(h.value).ok_or("invalid response")?;
            if length.is_some_and(|l| l != n) {
                return Err("invalid response");
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // Several fields are one list; the last coding decides the framing.
            if let Some(last) = h.value.rsplit(|&b| b == b',').next() {
                coding = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            }
        } else if h.name.eq_ignore_ascii_case("connection") {
            close |= has_token(h.value, "close");
            keep |= has_token(h.value, "keep-alive");
        }
    }
    let framing = if head_request || (100..200).contains(&status) || status == 204 || status == 304
    {
        Framing::Empty
    } else {
        match (coding, length) {
            (Some(true), _) => Framing::Chunked,
            (Some(false), _) => Framing::UntilClose,
            (None, Some(n)) => Framing::Length(n),
            (None, None) => Framing::UntilClose,
        }
    };
    Ok(Some(Head {
        status,
        len,
        framing,
        keep_alive: !close && status != 101 && (http11 || keep),
    }))
}

/// A `Content-Length` value: digits only (no sign, no spaces inside), at most `u64::MAX`.
fn content_length(value: &[u8]) -> Option<u64> {
    let digits = value.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Whether the comma-separated header `value` holds `token` (case-insensitive).
fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// A streaming decoder of a chunked body (RFC 9112 §7.1) that counts the data bytes.
#[derive(Debug, Default)]
struct Chunked {
    state: ChunkState,
    body_len: u64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Expecting a chunk-size line.
    #[default]
    Size,
    /// Inside a chunk's data, this many bytes to go.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one.
    Trailer,
}

impl Chunked {
    /// Consumes what it can of `buf`: returns the bytes used and whether the body ended.
    fn feed(&mut self, buf: &[u8]) -> Result<(usize, bool), FastError> {
        let mut at = 0;
        loop {
            let rest = &buf[at..];
            match self.state {
                ChunkState::Size => match httparse::parse_chunk_size(rest) {
                    Ok(httparse::Status::Complete((used, 0))) => {
                        at += used;
                        self.state = ChunkState::Trailer;
                    }
                    Ok(httparse::Status::Complete((used, size))) => {
                        at += used;
                        self.state = ChunkState::Data(size);
                    }
                    Ok(httparse::Status::Partial) if rest.len() > MAX_CHUNK_LINE => {
                        return Err("invalid response")
                    }
                    Ok(httparse::Status::Partial) => return Ok((at, false)),
                    Err(_) => return Err("invalid response"),
                },
                ChunkState::Data(left) => {
                    let take = left.min(rest.len() as u64);
                    at += take as usize;
                    self.body_len += take;
                    if take == left {
                        self.state = ChunkState::DataEnd;
                    } else {
                        self.state = ChunkState::Data(left - take);
                        return Ok((at, false));
                    }
                }
                ChunkState::DataEnd => match rest {
                    [b'\r', b'\n', ..] => {
                        at += 2;
                        self.state = ChunkState::Size;
                    }
                    [b'\r'] | [] => return Ok((at, false)),
                    _ => return Err("invalid response"),
                },
                ChunkState::Trailer => match rest.iter().position(|&b| b == b'\n') {
                    Some(0) => return Err("invalid response"),
                    Some(1) if rest[0] == b'\r' => return Ok((at + 2, true)),
                    Some(i) if i >= MAX_HEAD => return Err("invalid response"),
                    Some(i) => at += i + 1,
                    None if rest.len() > MAX_HEAD => return Err("invalid response"),
                    None => return Ok((at, false)),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> FastTarget {
        FastTarget::of(
            &Url::parse(url).expect("url"),
            &Method::GET,
            &HeaderMap::new(),
            None,
        )
        .expect("http")
    }

    /// A plain 200 with a 2-byte body.
    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

    /// A server on 127.0.0.1 that hands each connection it accepts, with its number (0, 1,
    /// ...), to `handle`, one connection after the other.
    async fn accept_each<F, Fut>(handle: F) -> std::net::SocketAddr
    where
        F: Fn(tokio::net::TcpStream, u64) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let mut n = 0;
            while let Ok((sock, _)) = listener.accept().await {
                handle(sock, n).await;
                n += 1;
            }
        });
        addr
    }

    /// A server on 127.0.0.1 that reads a request head and answers it with the next of
    /// `responses` on the same connection; it closes the connection after an HTTP/1.0 or
    /// `Connection: close` response, and stops when the responses run out.
    async fn serve(responses: Vec<&'static [u8]>) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let mut responses = responses.into_iter();
            while let Ok((mut sock, _)) = listener.accept().await {
                let mut seen = Vec::new();
                loop {
                    let mut buf = [0u8; 1024];
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                    if !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        continue;
                    }
                    seen.clear();
                    let Some(r) = responses.next() else { return };
                    let _ = sock.write_all(r).await;
                    let close = r.starts_with(b"HTTP/1.0")
                        || r.windows(17)
                            .any(|w| w.eq_ignore_ascii_case(b"connection: close"));
                    if close {
                        break;
                    }
                }
            }
        });
        addr
    }

    /// A server that answers each connection's first request with `Connection: close` and
    /// closes: every request still succeeds (the response before the close is read, the next
    /// request reconnects).
    #[tokio::test]
    async fn survives_servers_that_close() {
        const R: &[u8] =
            b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
        let addr = serve(vec![R, R, R]).await;
        let t = target(&format!("http://{addr}/x"));
        let mut conn = FastConn::default();
        for _ in 0..3 {
            let r = conn.send(&t, Duration::from_secs(5)).await;
            assert_eq!(r, Ok((201, 5)));
        }
        // Nothing listening: a connection error, not a hang.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let gone = closed.local_addr().expect("addr");
        drop(closed);
        let r = FastConn::default()
            .send(&target(&format!("http://{gone}/")), Duration::from_secs(5))
            .await;
        assert_eq!(r, Err("connection error"));
    }

    /// Every framing, on one keep-alive connection, in pieces the reader must join.
    #[tokio::test]
    async fn reads_every_framing() {
        let addr = serve(vec![
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: gzip, chunked\r\n\r\n4;ext=1\r\nwiki\r\n5\r\npedia\r\n0\r\nX-Trailer: 1\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n",
            b"HTTP/1.1 500 Oops\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.0 200 OK\r\n\r\nuntil the end",
        ])
        .await;
        let t = target(&format!("http://{addr}/"));
        let mut conn = FastConn::default();
        let timeout = Duration::from_secs(5);
        assert_eq!(conn.send(&t, timeout).await, Ok((200, 3)));
        assert_eq!(conn.send(&t, timeout).await, Ok((404, 9)));
        assert_eq!(conn.send(&t, timeout).await, Ok((204, 0)));
        assert_eq!(conn.send(&t, timeout).await, Ok((304, 0)));
        assert_eq!(conn.send(&t, timeout).await, Ok((500, 0)));
        assert_eq!(conn.send(&t, timeout).await, Ok((200, 13)));
    }

    /// A server that is not HTTP, or stops mid-body, or never answers.
    #[tokio::test]
    async fn bad_servers_are_errors() {
        let t = target(&format!(
            "http://{}/",
            serve(vec![b"SSH-2.0-OpenSSH\r\n\r\n"]).await
        ));
        let timeout = Duration::from_secs(5);
        assert_eq!(
            FastConn::default().send(&t, timeout).await,
            Err("invalid response")
        );
        let t = target(&format!(
            "http://{}/",
            serve(vec![
                b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\nshort"
            ])
            .await
        ));
        assert_eq!(
            FastConn::default().send(&t, timeout).await,
            Err("connection error")
        );
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let t = target(&format!("http://{}/", silent.local_addr().expect("addr")));
        let r = FastConn::default()
            .send(&t, Duration::from_millis(200))
            .await;
        assert_eq!(r, Err("timeout"));
    }

    /// Heads that break RFC 9112's framing rules are invalid at once (no waiting for bytes
    /// that will never come), and a chunk-size line that never ends does not grow without
    /// bound.
    #[tokio::test]
    async fn ambiguous_or_endless_framing_is_invalid() {
        let endless: &'static [u8] = Box::leak(
            [
                &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext="[..],
                &[b'a'; 20 * 1024][..],
            ]
            .concat()
            .into_boxed_slice(),
        );
        for bad in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello",
            b"HTTP/1.1 000 Zero\r\nContent-Length: 0\r\n\r\n",
            endless,
        ] {
            let t = target(&format!("http://{}/", serve(vec![bad]).await));
            let r = FastConn::default().send(&t, Duration::from_secs(5)).await;
            assert_eq!(r, Err("invalid response"), "{:?}", &bad[..40]);
        }
        // The last transfer coding is not chunked: the body runs to the close.
        let t = target(&format!(
            "http://{}/",
            serve(vec![
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\nConnection: close\r\n\r\nabc"
            ])
            .await
        ));
        let r = FastConn::default().send(&t, Duration::from_secs(5)).await;
        assert_eq!(r, Ok((200, 3)));
        // After a 101 the connection is not HTTP any more: the next request opens a new one.
        let t = target(&format!(
            "http://{}/",
            serve(vec![
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            ])
            .await
        ));
        let mut conn = FastConn::default();
        assert_eq!(conn.send(&t, Duration::from_secs(5)).await, Ok((101, 0)));
        assert_eq!(conn.send(&t, Duration::from_secs(5)).await, Ok((200, 2)));
    }

    /// A server that closes each kept-alive connection while it is idle, without saying so,
    /// and then sends stray bytes on the next one: no request fails and no stray byte is read
    /// as a response, because a connection is checked before it is reused.
    #[tokio::test]
    async fn idle_closes_and_stray_bytes_are_not_failures() {
        let addr = accept_each(|mut sock, n| async move {
            let mut buf = [0u8; 1024];
            let _ = sock.read(&mut buf).await;
            let _ = sock.write_all(OK).await;
            if n % 2 == 1 {
                // Odd connections: stray bytes a little later, then keep the socket open.
                tokio::time::sleep(Duration::from_millis(5)).await;
                let _ = sock.write_all(b"HTTP/1.1 500 Stray\r\n\r\n").await;
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    drop(sock);
                });
            }
            // Even connections: closed idle.
        })
        .await;
        let t = target(&format!("http://{addr}/"));
        let mut conn = FastConn::default();
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(40)).await;
            assert_eq!(conn.send(&t, Duration::from_secs(5)).await, Ok((200, 2)));
        }
    }

    /// A server that closes every connection right after its response, without saying so,
    /// while the next GET is already on its way: the GET is sent again on a new connection
    /// (never twice to the server), so none fails.
    #[tokio::test]
    async fn gets_on_connections_closed_meanwhile_are_sent_again() {
        let served = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let count = std::sync::Arc::clone(&served);
        let addr = accept_each(move |mut sock, _| {
            let count = std::sync::Arc::clone(&count);
            async move {
                let mut buf = [0u8; 1024];
                if matches!(sock.read(&mut buf).await, Ok(n) if n > 0) {
                    count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let _ = sock.write_all(OK).await;
                    // Closed a moment later, when the next request has arrived unread.
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        })
        .await;
        let t = target(&format!("http://{addr}/"));
        let mut conn = FastConn::default();
        for _ in 0..50 {
            assert_eq!(conn.send(&t, Duration::from_secs(5)).await, Ok((200, 2)));
        }
        assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 50);
    }

    /// A server that answers 413 and closes before reading a large body: the 413 is the
    /// outcome when it can still be read.
    #[tokio::test]
    async fn an_early_answer_to_a_large_upload_counts() {
        let addr = accept_each(|mut sock, _| async move {
            let mut buf = [0u8; 1024];
            let _ = sock.read(&mut buf).await;
            let _ = sock
                .write_all(
                    b"HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await;
            let _ = sock.shutdown().await;
            // Keep reading (and dropping) what arrives, so the close is a FIN, not a reset.
            while matches!(sock.read(&mut buf).await, Ok(n) if n > 0) {}
        })
        .await;
        let body = Bytes::from(vec![b'x'; 4 << 20]);
        let t = FastTarget::of(
            &Url::parse(&format!("http://{addr}/upload")).expect("url"),
            &Method::POST,
            &HeaderMap::new(),
            Some(&body),
        )
        .expect("http");
        let r = FastConn::default().send(&t, Duration::from_secs(10)).await;
        assert_eq!(r, Ok((413, 0)));
    }

    #[test]
    fn chunked_in_pieces() {
        let body = b"3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n";
        for split in 0..body.len() {
            let mut d = Chunked::default();
            let mut pending = body[..split].to_vec();
            let (used, done) = d.feed(&pending).expect("first part");
            assert!(!done || split == body.len());
            pending.drain(..used);
            pending.extend_from_slice(&body[split..]);
            let (used, done) = d.feed(&pending).expect("second part");
            assert!(done, "split at {split}");
            assert_eq!(used, pending.len());
            assert_eq!(d.body_len, 19);
        }
        assert_eq!(Chunked::default().feed(b"zz\r\n"), Err("invalid response"));
        assert_eq!(Chunked::default().feed(b"1\r\nab"), Err("invalid response"));
    }

    #[test]
    fn requests_on_the_wire() {
        let t = target("http://example.com/a/b?x=1");
        assert_eq!(t.addr, "example.com:80");
        assert_eq!(
            t.request,
            format!("GET /a/b?x=1 HTTP/1.1\r\nhost: example.com\r\nuser-agent: {UA}\r\n\r\n")
        );
        let t = target("http://127.0.0.1:8080");
        assert_eq!(t.addr, "127.0.0.1:8080");
        assert!(t
            .request
            .starts_with(b"GET / HTTP/1.1\r\nhost: 127.0.0.1:8080\r\n"));
        assert_eq!(target("http://[::1]:81/x").addr, "[::1]:81");
        assert!(FastTarget::of(
            &Url::parse("https://example.com/").expect("url"),
            &Method::GET,
            &HeaderMap::new(),
            None
        )
        .is_none());

        let mut headers = HeaderMap::new();
        headers.insert("content-type", "application/json".parse().expect("value"));
        headers.insert("host", "virtual.example".parse().expect("value"));
        headers.insert("content-length", "999".parse().expect("value"));
        let body = Bytes::from_static(b"{\"a\":1}");
        let t = FastTarget::of(
            &Url::parse("http://127.0.0.1:1/items").expect("url"),
            &Method::POST,
            &headers,
            Some(&body),
        )
        .expect("http");
        assert_eq!(
            t.request,
            format!(
                "POST /items HTTP/1.1\r\nuser-agent: {UA}\r\ncontent-type: application/json\r\nhost: virtual.example\r\ncontent-length: 7\r\n\r\n{{\"a\":1}}"
            )
        );
        let t = FastTarget::of(
            &Url::parse("http://127.0.0.1:1/").expect("url"),
            &Method::HEAD,
            &HeaderMap::new(),
            None,
        )
        .expect("http");
        assert!(t.head);
    }
}

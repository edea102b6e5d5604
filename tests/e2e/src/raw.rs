//! Raw HTTP/1.1 clients for the API's hardening tests: half-sent requests, bodies that stall,
//! and reading whatever answer (or close) comes back, with deadlines.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What a raw request got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawAnswer {
    /// A response with this status, its head (lowercase) and body.
    Response {
        /// HTTP status.
        status: u16,
        /// The response head, lowercased.
        head: String,
        /// The body.
        body: String,
    },
    /// The server closed (or reset) the connection without a response.
    Closed,
    /// Nothing before the deadline.
    Nothing,
}

impl RawAnswer {
    /// The status, if a response came.
    pub fn status(&self) -> Option<u16> {
        match self {
            RawAnswer::Response { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The `host:port` of a base URL (`http://127.0.0.1:1234`).
pub fn host_port(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

/// The head of a `POST path` with `headers` (`"Name: value"` each) and `Content-Length`.
pub fn post_head(path: &str, headers: &[String], content_length: usize) -> String {
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: loadtest\r\nContent-Type: application/json\r\n\
         Content-Length: {content_length}\r\n"
    );
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head
}

/// Connects and writes `bytes`; then writes `body_bytes` bytes of body in 64 KiB pieces until
/// they are sent, the server stops taking them for `write_timeout`, or it closes. Returns the
/// stream (kept open: the request stalls there) and the body bytes written.
pub async fn send_partial(
    addr: &str,
    bytes: &[u8],
    body_bytes: usize,
    write_timeout: Duration,
) -> std::io::Result<(TcpStream, usize)> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(bytes).await?;
    let piece = vec![b' '; 64 * 1024];
    let mut sent = 0;
    while sent < body_bytes {
        let n = piece.len().min(body_bytes - sent);
        match tokio::time::timeout(write_timeout, s.write_all(&piece[..n])).await {
            Ok(Ok(())) => sent += n,
            Ok(Err(_)) | Err(_) => break,
        }
    }
    Ok((s, sent))
}

/// Reads one response from `s` until `deadline`: the head and as much body as
/// `Content-Length` says; [`RawAnswer::Closed`] on EOF or reset before a status line.
pub async fn read_answer(s: &mut TcpStream, deadline: Instant) -> RawAnswer {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(answer) = parse(&buf) {
            return answer;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut chunk)).await {
            Err(_) => return RawAnswer::Nothing,
            Ok(Ok(0)) | Ok(Err(_)) => {
                return parse_partial(&buf).unwrap_or(RawAnswer::Closed);
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Waits until the server closes `s` (EOF or reset), discarding what it sends; returns when,
/// or `None` at the deadline.
pub async fn closed_by_server(s: &mut TcpStream, deadline: Instant) -> Option<Instant> {
    let mut chunk = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut chunk)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(Instant::now()),
            Ok(Ok(_)) => {}
        }
    }
}

fn parse(buf: &[u8]) -> Option<RawAnswer> {
    let text = String::from_utf8_lossy(buf);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let head = head.to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    if body.len() < length {
        return None;
    }
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some(RawAnswer::Response {
        status,
        head,
        body: body[..length].to_string(),
    })
}

fn parse_partial(buf: &[u8]) -> Option<RawAnswer> {
    let text = String::from_utf8_lossy(buf).to_string();
    let status = text
        .strip_prefix("HTTP/1.1 ")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Some(RawAnswer::Response {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_string(),
    })
}

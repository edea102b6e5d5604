//! The fast path against hand-written servers: every framing, closes at every moment, servers
//! that are not HTTP or never answer.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::{Method, Url};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::error::FastError;
use super::framing::Chunked;
use super::target::UA;
use super::{FastConn, FastTarget};

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
    const R: &[u8] = b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
    let addr = serve(vec![R, R, R]).await;
    let t = target(&format!("http://{addr}/x"));
    let mut conn = FastConn::default();
    for _ in 0..3 {
        let r = conn.send_h1(&t, Duration::from_secs(5)).await;
        assert_eq!(r, Ok((201, 5)));
    }
    // Nothing listening: a connection error, not a hang.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let gone = closed.local_addr().expect("addr");
    drop(closed);
    let r = FastConn::default()
        .send_h1(&target(&format!("http://{gone}/")), Duration::from_secs(5))
        .await;
    assert_eq!(r, Err(FastError::Connection));
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
    assert_eq!(conn.send_h1(&t, timeout).await, Ok((200, 3)));
    assert_eq!(conn.send_h1(&t, timeout).await, Ok((404, 9)));
    assert_eq!(conn.send_h1(&t, timeout).await, Ok((204, 0)));
    assert_eq!(conn.send_h1(&t, timeout).await, Ok((304, 0)));
    assert_eq!(conn.send_h1(&t, timeout).await, Ok((500, 0)));
    assert_eq!(conn.send_h1(&t, timeout).await, Ok((200, 13)));
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
        FastConn::default().send_h1(&t, timeout).await,
        Err(FastError::InvalidResponse)
    );
    let t = target(&format!(
        "http://{}/",
        serve(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\nshort"
        ])
        .await
    ));
    assert_eq!(
        FastConn::default().send_h1(&t, timeout).await,
        Err(FastError::Connection)
    );
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let t = target(&format!("http://{}/", silent.local_addr().expect("addr")));
    let r = FastConn::default()
        .send_h1(&t, Duration::from_millis(200))
        .await;
    assert_eq!(r, Err(FastError::Timeout));
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
        let r = FastConn::default()
            .send_h1(&t, Duration::from_secs(5))
            .await;
        assert_eq!(r, Err(FastError::InvalidResponse), "{:?}", &bad[..40]);
    }
    // The last transfer coding is not chunked: the body runs to the close.
    let t = target(&format!(
        "http://{}/",
        serve(vec![
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\nConnection: close\r\n\r\nabc"
        ])
        .await
    ));
    let r = FastConn::default()
        .send_h1(&t, Duration::from_secs(5))
        .await;
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
    assert_eq!(conn.send_h1(&t, Duration::from_secs(5)).await, Ok((101, 0)));
    assert_eq!(conn.send_h1(&t, Duration::from_secs(5)).await, Ok((200, 2)));
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
        assert_eq!(conn.send_h1(&t, Duration::from_secs(5)).await, Ok((200, 2)));
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
        assert_eq!(conn.send_h1(&t, Duration::from_secs(5)).await, Ok((200, 2)));
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
            .write_all(b"HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
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
    let r = FastConn::default()
        .send_h1(&t, Duration::from_secs(10))
        .await;
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
    assert_eq!(
        Chunked::default().feed(b"zz\r\n"),
        Err(FastError::InvalidResponse)
    );
    assert_eq!(
        Chunked::default().feed(b"1\r\nab"),
        Err(FastError::InvalidResponse)
    );
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
    let https = FastTarget::of(
        &Url::parse("https://example.com/").expect("url"),
        &Method::GET,
        &HeaderMap::new(),
        None,
    )
    .expect("https is on the fast path");
    assert_eq!(https.addr, "example.com:443");
    assert_eq!(https.h2.uri, "https://example.com/");
    assert!(FastTarget::of(
        &Url::parse("ftp://example.com/").expect("url"),
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
    // HTTP/2: no Host (the URI's authority is :authority) and no Content-Length header.
    let names: Vec<&str> = t.h2.headers.keys().map(|k| k.as_str()).collect();
    assert_eq!(names, ["content-type", "user-agent"]);
    assert_eq!(t.h2.body, body);
    let t = FastTarget::of(
        &Url::parse("http://127.0.0.1:1/").expect("url"),
        &Method::HEAD,
        &HeaderMap::new(),
        None,
    )
    .expect("http");
    assert!(t.head);
}

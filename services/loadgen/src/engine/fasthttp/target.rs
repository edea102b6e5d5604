//! A request on the fast path, serialized once per request kind.

use bytes::Bytes;
use reqwest::header::{HeaderMap, CONTENT_LENGTH, HOST, TRANSFER_ENCODING, USER_AGENT};
use reqwest::{Method, Url};

/// The `User-Agent` sent unless the scenario sets one.
pub(super) const UA: &str = concat!("loadgen/", env!("CARGO_PKG_VERSION"));

/// Headers HTTP/2 forbids or replaces (RFC 9113 §8.2.2, §8.3.1): left out of HTTP/2 requests.
const H2_FORBIDDEN: [&str; 7] = [
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

/// A request on the fast path, prepared once: where it goes and its bytes on the wire.
#[derive(Debug, Clone)]
pub(crate) struct FastTarget {
    /// `host:port` to connect to.
    pub(crate) addr: String,
    /// The whole HTTP/1.1 request: request line, `Host`, `User-Agent` (unless the scenario
    /// sets them), the scenario's headers, `Content-Length` (when there is a body, and always
    /// for POST/PUT/PATCH) and the body.
    pub(crate) request: Bytes,
    /// A `HEAD` request: the response has no body whatever its headers say.
    pub(crate) head: bool,
    /// An idempotent method (RFC 9110 §9.2.2: GET, HEAD, OPTIONS, TRACE, PUT, DELETE): sent
    /// again, once, when a reused connection turns out closed before any response byte.
    pub(crate) idempotent: bool,
    /// The same request for HTTP/2.
    pub(crate) h2: H2Request,
}

/// A request's parts for HTTP/2: `:method`, `:scheme`/`:authority`/`:path` (from the URI),
/// the headers (no `Host` and no connection-specific ones, which HTTP/2 forbids) and the body.
#[derive(Debug, Clone)]
pub(crate) struct H2Request {
    pub(crate) method: Method,
    pub(crate) uri: http::Uri,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl H2Request {
    /// A new `http::Request` of these parts (h2 takes one by value per stream).
    pub(crate) fn request(&self) -> http::Request<()> {
        let mut req = http::Request::new(());
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = self.headers.clone();
        req
    }
}

impl FastTarget {
    /// The fast-path request for `method url` with `headers` and `body`, or `None` when the URL
    /// is neither `http://` nor `https://`. A `Content-Length` or `Transfer-Encoding` among `headers` is
    /// ignored: the body's framing is always `Content-Length` of the body given.
    pub(crate) fn of(
        url: &Url,
        method: &Method,
        headers: &HeaderMap,
        body: Option<&Bytes>,
    ) -> Option<Self> {
        if url.scheme() != "http" && url.scheme() != "https" {
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
        let h2 = H2Request {
            method: method.clone(),
            uri: http::Uri::try_from(url.as_str()).ok()?,
            headers: {
                let mut h2_headers = HeaderMap::with_capacity(headers.len() + 1);
                for (name, value) in headers {
                    if !H2_FORBIDDEN.contains(&name.as_str()) {
                        h2_headers.append(name.clone(), value.clone());
                    }
                }
                if !h2_headers.contains_key(USER_AGENT) {
                    h2_headers.insert(USER_AGENT, reqwest::header::HeaderValue::from_static(UA));
                }
                h2_headers
            },
            body: body.cloned().unwrap_or_default(),
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
            h2,
        })
    }
}

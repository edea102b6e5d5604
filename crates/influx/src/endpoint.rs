//! [`Endpoint`]: one store's base URL, credential and connection pool, and what every request
//! to it shares: the credential, the error classification, error texts without the URL.

use std::time::Duration;

use reqwest::{header, Method, RequestBuilder, Response, Url};
use secrecy::{ExposeSecret, SecretString};

use crate::Error;

/// How requests prove who they are.
#[derive(Debug, Clone, Default)]
pub enum Auth {
    /// No credential (a store with authentication off, VictoriaMetrics).
    #[default]
    None,
    /// HTTP basic auth: an InfluxDB 1.x user; on InfluxDB 2.x's v1 compatibility API, the v1
    /// authorization's user name and password.
    Basic {
        /// User name.
        username: String,
        /// Password; `None` sends the user name alone.
        password: Option<SecretString>,
    },
    /// The `u` and `p` query parameters: InfluxDB 1.x's other form (for proxies that drop
    /// `Authorization`); InfluxDB 3's v1 API reads a token from `p`. The request's URL then
    /// carries the password: it is never logged, and error texts leave the URL out.
    Params {
        /// User name (`u`).
        username: String,
        /// Password or token (`p`).
        password: SecretString,
    },
    /// `Authorization: Token …`: InfluxDB 2.x (also on its v1 compatibility API), 3.x and Cloud.
    Token(SecretString),
}

/// An InfluxDB-compatible store: its base URL, the credential, and the connection pool that
/// every [`crate::Writer`] and [`crate::QueryClient`] built on it (clones) shares.
#[derive(Debug, Clone)]
pub struct Endpoint {
    http: reqwest::Client,
    base: Url,
    auth: Auth,
}

/// The store's URL is not an `http://` or `https://` base URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid InfluxDB URL `{url}`: {reason} (expected e.g. http://127.0.0.1:8086)")]
pub struct InvalidUrl {
    /// The URL as given, without its password.
    pub url: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Time to open a connection before the attempt fails as [`Error::Unavailable`].
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The most of an error response's body read for its message, bytes (a proxy's HTML error page
/// can be large).
const ERROR_BODY_BYTES: usize = 4096;

impl Endpoint {
    /// The store at `url` (e.g. `http://127.0.0.1:8086`, or a base path behind a proxy:
    /// `https://proxy/influx`), authenticating with `auth`.
    ///
    /// Errors: [`InvalidUrl`] for a URL that does not parse, is not `http` or `https`, or has a
    /// query string.
    pub fn new(url: &str, auth: Auth) -> Result<Self, InvalidUrl> {
        let invalid = |reason: &str| InvalidUrl {
            url: redact(url),
            reason: reason.to_string(),
        };
        let base = Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https"));
        }
        if base.query().is_some() {
            return Err(invalid("the URL must not have a query string"));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("loadtest-influx/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| invalid(&e.to_string()))?;
        Ok(Self { http, base, auth })
    }

    /// The base URL without user name or password, for logs.
    pub fn display_url(&self) -> String {
        redact(self.base.as_str())
    }

    /// The URL of `path` (`write`, `api/v2/write`, `query`) under the base URL, with `query`'s
    /// pairs (empty values left out).
    pub(crate) fn url(&self, path: &str, query: &[(&str, &str)]) -> Url {
        let mut url = self.base.clone();
        let joined = format!("{}/{path}", self.base.path().trim_end_matches('/'));
        url.set_path(&joined);
        {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in query.iter().filter(|(_, v)| !v.is_empty()) {
                pairs.append_pair(k, v);
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        url
    }

    /// A request to `url` with the credential and `timeout` (the whole request, body included).
    pub(crate) fn request(&self, method: Method, url: Url, timeout: Duration) -> RequestBuilder {
        let req = self.http.request(method, url).timeout(timeout);
        match &self.auth {
            Auth::None => req,
            Auth::Basic { username, password } => {
                req.basic_auth(username, password.as_ref().map(|p| p.expose_secret()))
            }
            Auth::Params { username, password } => {
                req.query(&[("u", username.as_str()), ("p", password.expose_secret())])
            }
            Auth::Token(token) => req.header(
                header::AUTHORIZATION,
                format!("Token {}", token.expose_secret()),
            ),
        }
    }

    /// Sends `req`: the response when its status is 2xx, else the classified [`Error`] (see
    /// [`Error::from_status`]) with the store's explanation and `Retry-After`.
    pub(crate) async fn send(&self, req: RequestBuilder) -> Result<Response, Error> {
        let resp = req.send().await.map_err(|e| transport_error(&e))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let retry_after = retry_after(resp.headers());
        let header_error = resp
            .headers()
            .get("x-influxdb-error")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = read_at_most(resp, ERROR_BODY_BYTES).await;
        let message = explanation(&body)
            .or(header_error)
            .unwrap_or_else(|| format!("(no explanation; HTTP {status})"));
        Err(Error::from_status(status, message, retry_after))
    }
}

/// A transport error (connect, timeout, reset) as [`Error::Unavailable`], without the URL.
pub(crate) fn transport_error(e: &reqwest::Error) -> Error {
    let mut message = if e.is_timeout() {
        format!("timed out: {e}")
    } else {
        format!("transport error: {e}")
    };
    // The error's own text names the URL, which may carry a password (`p`, user info).
    if let Some(url) = e.url() {
        message = message.replace(url.as_str(), "<url>");
    }
    // reqwest's Display leaves out the cause ("error sending request"); the cause says why.
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(&format!(": {s}"));
        source = s.source();
    }
    Error::Unavailable {
        message,
        retry_after: None,
    }
}

/// The `Retry-After` header in seconds (the HTTP-date form is not used by InfluxDB, and is
/// ignored: the caller's backoff applies then).
fn retry_after(headers: &header::HeaderMap) -> Option<Duration> {
    headers
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// Up to `limit` bytes of the body, as text (lossy); empty when it cannot be read.
async fn read_at_most(mut resp: Response, limit: usize) -> String {
    let mut buf = Vec::new();
    while buf.len() < limit {
        match resp.chunk().await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk[..chunk.len().min(limit - buf.len())]),
            Ok(None) | Err(_) => break,
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// The store's explanation in an error body: InfluxDB 1.x's `{"error": …}`, 2.x's
/// `{"code": …, "message": …}`, or the text itself (VictoriaMetrics); `None` when empty.
pub(crate) fn explanation(body: &str) -> Option<String> {
    let body = body.trim();
    if body.is_empty() {
        return None;
    }
    if let Ok(serde_json::Value::Object(o)) = serde_json::from_str::<serde_json::Value>(body) {
        for key in ["error", "message"] {
            if let Some(serde_json::Value::String(s)) = o.get(key) {
                return Some(s.trim().to_string());
            }
        }
    }
    Some(body.to_string())
}

/// `url` without its user info (for messages); the text itself when it does not parse.
fn redact(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => url.split('@').next_back().unwrap_or(url).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_join_the_base_url_and_empty_values_are_left_out() {
        let e = Endpoint::new("http://h:8086", Auth::None).expect("valid");
        assert_eq!(
            e.url("write", &[("db", "d b"), ("rp", ""), ("precision", "ns")])
                .as_str(),
            "http://h:8086/write?db=d+b&precision=ns"
        );
        let e = Endpoint::new("https://proxy/influx/", Auth::None).expect("valid");
        assert_eq!(
            e.url("api/v2/write", &[]).as_str(),
            "https://proxy/influx/api/v2/write"
        );
    }

    #[test]
    fn bad_urls_are_named_without_their_password() {
        let err = Endpoint::new("ftp://u:secret@h", Auth::None).expect_err("scheme");
        assert!(err.to_string().contains("http or https"), "{err}");
        assert!(!err.to_string().contains("secret"), "{err}");
        assert!(Endpoint::new("127.0.0.1:8086", Auth::None).is_err());
        assert!(Endpoint::new("http://h/?db=x", Auth::None).is_err());
        let e = Endpoint::new("http://u:secret@h:8086", Auth::None).expect("valid");
        assert_eq!(e.display_url(), "http://h:8086/");
    }

    #[test]
    fn explanations_are_read_from_each_stores_error_body() {
        assert_eq!(
            explanation("{\"error\":\"partial write: field type conflict\"}\n").as_deref(),
            Some("partial write: field type conflict")
        );
        assert_eq!(
            explanation("{\"code\":\"unauthorized\",\"message\":\"unauthorized access\"}")
                .as_deref(),
            Some("unauthorized access")
        );
        assert_eq!(
            explanation(" cannot parse line\n").as_deref(),
            Some("cannot parse line")
        );
        assert_eq!(explanation("  "), None);
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        let mut h = header::HeaderMap::new();
        h.insert(header::RETRY_AFTER, header::HeaderValue::from_static(" 7 "));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            header::RETRY_AFTER,
            header::HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), None);
    }
}

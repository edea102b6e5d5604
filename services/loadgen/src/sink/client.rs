//! Client of the load-test API (`/apiv0.1/events/...`): register, publish stats, commit.
//!
//! A `503` (honouring `Retry-After`, in seconds), `502`, `504`, `429` or a connection error is
//! retried with the kit's capped exponential backoff (0.5 s doubling to 5 s, with jitter) until
//! the retry budget (default 60 s) is spent; any other 4xx/5xx is an [`ApiError::Rejected`]
//! carrying the problem+json `title`, `detail` and offending `field`.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use protocol::api::{CommitRequest, Problem, RegisterRequest, RegisterResponse, StatsRequest};
use reqwest::{StatusCode, Url};
use serde::Serialize;
use tokio::time::Instant;
use uuid::Uuid;

use crate::engine::runner::transport_error_kind;

/// First retry delay.
const BACKOFF_START: Duration = Duration::from_millis(500);
/// Longest delay between retries.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Longest `Retry-After` honoured.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(30);

/// Why an API call failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The API answered with an error that retrying cannot fix (4xx, 500).
    #[error("{what} rejected by the API: {}", describe_status(*.status, .problem.as_deref()))]
    Rejected {
        /// Which call (`register`, `stats`, `commit`).
        what: &'static str,
        /// The HTTP status.
        status: StatusCode,
        /// The problem+json body, when there was one.
        problem: Option<Box<Problem>>,
    },
    /// The API stayed unavailable (503s or connection errors) for the whole retry budget.
    #[error("{what} failed: the API at {url} stayed unavailable for {elapsed:?} ({attempts} attempts); last error: {last}")]
    Unavailable {
        /// Which call.
        what: &'static str,
        /// The URL called.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// Time spent retrying.
        elapsed: Duration,
        /// The last error seen.
        last: String,
    },
    /// The API answered 2xx with a body we could not read.
    #[error("{what}: unexpected response from the API: {message}")]
    BadResponse {
        /// Which call.
        what: &'static str,
        /// What was wrong.
        message: String,
    },
    /// A URL could not be built (bad consumer host).
    #[error("invalid API URL: {0}")]
    Url(String),
}

/// `HTTP 422 Unprocessable Entity: detail (field `x`)`, from the status and problem+json body.
fn describe_status(status: StatusCode, p: Option<&Problem>) -> String {
    let title = p
        .map(|p| p.title.clone())
        .filter(|t| !t.is_empty())
        .or_else(|| status.canonical_reason().map(str::to_string))
        .unwrap_or_default();
    let mut s = format!("HTTP {} {title}", status.as_u16());
    let Some(p) = p else {
        return s.trim_end().to_string();
    };
    if !p.detail.is_empty() {
        s.push_str(&format!(": {}", p.detail));
    }
    if let Some(f) = &p.field {
        s.push_str(&format!(" (field `{f}`)"));
    }
    s
}

/// Formats a time as the API expects (RFC 3339, UTC, milliseconds).
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The load-test API client.
#[derive(Debug, Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: Url,
    retry_budget: Duration,
}

impl ApiClient {
    /// A client for the API at `base` (`https://loadtest-api.example.com`), giving up retrying
    /// after 60 s.
    pub fn new(base: Url) -> Result<Self, ApiError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("loadgen/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ApiError::Url(format!("cannot build HTTP client: {e}")))?;
        Ok(Self {
            http,
            base,
            retry_budget: Duration::from_secs(60),
        })
    }

    /// The same client, giving up retrying after `budget`.
    pub fn with_retry_budget(mut self, budget: Duration) -> Self {
        self.retry_budget = budget;
        self
    }

    fn url(&self, path: &str) -> Result<Url, ApiError> {
        let mut base = self.base.clone();
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        base.join(path.trim_start_matches('/'))
            .map_err(|e| ApiError::Url(format!("{path}: {e}")))
    }

    /// Registers a run: `POST /apiv0.1/events/register` with the API key as bearer token.
    pub async fn register(
        &self,
        body: &RegisterRequest,
        api_key: Option<&str>,
    ) -> Result<RegisterResponse, ApiError> {
        let url = self.url("apiv0.1/events/register")?;
        let bytes = self.post("register", url, api_key, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| ApiError::BadResponse {
            what: "register",
            message: format!("{e}: {}", String::from_utf8_lossy(&bytes)),
        })
    }

    /// Publishes cumulative stats: `POST /apiv0.1/events/{uuid}/stats` with the event token.
    pub async fn publish_stats(
        &self,
        uuid: Uuid,
        token: &str,
        body: &StatsRequest,
    ) -> Result<(), ApiError> {
        let url = self.url(&format!("apiv0.1/events/{}/stats", uuid.hyphenated()))?;
        self.post("stats", url, Some(token), body).await.map(drop)
    }

    /// Commits the run: `POST /apiv0.1/events/commit` with the event token.
    pub async fn commit(&self, token: &str, body: &CommitRequest) -> Result<(), ApiError> {
        let url = self.url("apiv0.1/events/commit")?;
        self.post("commit", url, Some(token), body).await.map(drop)
    }

    /// POSTs `body` as JSON, retrying what is worth retrying; returns the 2xx body.
    async fn post<B: Serialize>(
        &self,
        what: &'static str,
        url: Url,
        bearer: Option<&str>,
        body: &B,
    ) -> Result<Vec<u8>, ApiError> {
        let started = Instant::now();
        let mut backoff = kit::backoff::Backoff::new(BACKOFF_START, BACKOFF_MAX);
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let mut req = self.http.post(url.clone()).json(body);
            if let Some(b) = bearer {
                req = req.bearer_auth(b);
            }
            let (last, retry_after) = match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    if status.is_success() {
                        return match resp.bytes().await {
                            Ok(b) => Ok(b.to_vec()),
                            Err(e) => Err(ApiError::BadResponse {
                                what,
                                message: format!("reading the body: {e}"),
                            }),
                        };
                    }
                    let retry_after = retry_after(resp.headers());
                    let bytes = resp.bytes().await.unwrap_or_default();
                    let problem = serde_json::from_slice::<Problem>(&bytes).ok().map(Box::new);
                    if !is_retryable(status) {
                        return Err(ApiError::Rejected {
                            what,
                            status,
                            problem,
                        });
                    }
                    let text = describe_status(status, problem.as_deref());
                    (text, retry_after)
                }
                Err(e) => (transport_error_text(&e), None),
            };
            let delay = backoff.next_delay();
            let wait = retry_after.unwrap_or(delay).min(RETRY_AFTER_MAX);
            let elapsed = started.elapsed();
            if elapsed + wait > self.retry_budget {
                return Err(ApiError::Unavailable {
                    what,
                    url: url.to_string(),
                    attempts,
                    elapsed,
                    last,
                });
            }
            tracing::warn!(call = what, attempt = attempts, error = %last, retry_in = ?wait, "API call failed, retrying");
            tokio::time::sleep(wait).await;
        }
    }
}

fn is_retryable(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::BAD_GATEWAY
            | StatusCode::GATEWAY_TIMEOUT
            | StatusCode::TOO_MANY_REQUESTS
    )
}

/// `Retry-After` in seconds (the HTTP-date form is ignored).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    let secs: f64 = v.trim().parse().ok()?;
    Duration::try_from_secs_f64(secs).ok()
}

/// A short, low-cardinality description of a transport error, including its cause.
pub fn transport_error_text(e: &reqwest::Error) -> String {
    let kind = transport_error_kind(e);
    let mut cause = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    if cause.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {cause}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_is_described() {
        let p: Problem = serde_json::from_str(
            r#"{"type":"about:blank","title":"Unprocessable Entity","status":422,
                "detail":"must be positive","field":"measurement.fields.clients"}"#,
        )
        .expect("problem");
        let e = ApiError::Rejected {
            what: "register",
            status: StatusCode::UNPROCESSABLE_ENTITY,
            problem: Some(Box::new(p)),
        };
        let text = e.to_string();
        assert!(text.contains("422"), "{text}");
        assert!(text.contains("must be positive"), "{text}");
        assert!(text.contains("measurement.fields.clients"), "{text}");
    }

    #[test]
    fn urls_keep_a_base_path() {
        let c = ApiClient::new(Url::parse("http://api:8080/prefix").expect("url")).expect("client");
        assert_eq!(
            c.url("apiv0.1/events/register").expect("url").as_str(),
            "http://api:8080/prefix/apiv0.1/events/register"
        );
        let c = ApiClient::new(Url::parse("http://api:8080").expect("url")).expect("client");
        assert_eq!(
            c.url("apiv0.1/events/commit").expect("url").as_str(),
            "http://api:8080/apiv0.1/events/commit"
        );
    }
}

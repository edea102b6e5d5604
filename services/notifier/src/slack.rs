//! The Slack incoming webhook: one POST of a JSON message, and what Slack's answer means.
//!
//! Slack answers `200 ok` when it took the message. `429` (rate limited: about one message per
//! second per webhook, with `Retry-After`), `5xx` (`500 rollup_error`, outages), `408` and
//! transport errors may work later: [`PostError::Retryable`], with the `Retry-After` delay when
//! Slack gave one. Any other answer cannot be fixed by posting again (`400 invalid_payload`,
//! `403 action_prohibited`, `404 channel_not_found` or `no_service` for a removed webhook,
//! `410 channel_is_archived`, a redirect): [`PostError::Rejected`], with Slack's status and
//! body as the reason.
//!
//! The webhook URL is a secret (whoever has it can post to the channel). It never appears in an
//! error: reqwest puts the URL into its errors, so they are stripped of it
//! ([`reqwest::Error::without_url`]) before they are shown, and [`Webhook`]'s `Debug` leaves it out.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderValue, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};

/// Why a post may be retried, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryCause {
    /// `429 Too Many Requests`.
    RateLimited,
    /// A `5xx` answer, or `408 Request Timeout`.
    ServerError,
    /// No answer: connection refused or reset, DNS, TLS, timeout.
    Transport,
}

impl RetryCause {
    /// The metrics label: `rate_limited`, `server_error` or `transport`.
    pub fn as_str(self) -> &'static str {
        match self {
            RetryCause::RateLimited => "rate_limited",
            RetryCause::ServerError => "server_error",
            RetryCause::Transport => "transport",
        }
    }
}

/// Why a post failed. The texts never carry the webhook URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PostError {
    /// Posting again later may work.
    #[error("{reason}")]
    Retryable {
        /// What happened (`Slack answered 503 Service Unavailable: …`).
        reason: String,
        /// The answer's `Retry-After`, when it had one.
        retry_after: Option<Duration>,
        /// The kind of failure.
        cause: RetryCause,
    },
    /// Slack refused the message for good (`Slack answered 400 Bad Request: invalid_payload`).
    #[error("{0}")]
    Rejected(String),
}

/// A webhook URL that cannot be used. The message names the setting, never the value.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// Not an absolute `http://` or `https://` URL.
    #[error("slack.webhook_url is not an http(s) URL (the value is a secret and not shown)")]
    NotHttp,
    /// The HTTP client could not be built (TLS set-up).
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// An incoming webhook to post to.
#[derive(Clone)]
pub struct Webhook {
    http: reqwest::Client,
    url: Url,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL is the secret.
        f.debug_struct("Webhook").finish_non_exhaustive()
    }
}

impl Webhook {
    /// The webhook at `url`, each post given up after `timeout`. Redirects are not followed
    /// (Slack's webhooks do not redirect; one is an answer Slack did not give).
    ///
    /// # Errors
    ///
    /// [`WebhookError::NotHttp`] for anything but an absolute http(s) URL.
    pub fn new(url: &SecretString, timeout: Duration) -> Result<Self, WebhookError> {
        let url = Url::parse(url.expose_secret().trim()).map_err(|_| WebhookError::NotHttp)?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(WebhookError::NotHttp);
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("loadtest-notifier/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| WebhookError::Client(e.without_url().to_string()))?;
        Ok(Self { http, url })
    }

    /// Posts `message` (JSON). `Ok` once Slack answered 2xx.
    ///
    /// # Errors
    ///
    /// [`PostError`]: retryable or rejected, as the module docs say.
    pub async fn post(&self, message: &serde_json::Value) -> Result<(), PostError> {
        let response = self
            .http
            .post(self.url.clone())
            .json(message)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = retry_after(response.headers().get(RETRY_AFTER), Utc::now());
        // Slack's answer body is a short error code (`invalid_payload`); a failed read leaves
        // the reason to the status.
        let body = response.text().await.unwrap_or_default();
        Err(classify(status, retry_after, &body))
    }
}

/// A transport error, without the URL reqwest puts in it, with its causes.
fn transport(e: reqwest::Error) -> PostError {
    let timed_out = e.is_timeout();
    let e = e.without_url();
    let mut reason = format!("posting to the Slack webhook failed: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        reason.push_str(&format!(": {s}"));
        source = s.source();
    }
    if timed_out {
        reason.push_str(" (timed out)");
    }
    PostError::Retryable {
        reason,
        retry_after: None,
        cause: RetryCause::Transport,
    }
}

/// What a non-2xx answer means: 429, 408 and 5xx may be retried, the rest is rejected.
pub fn classify(status: StatusCode, retry_after: Option<Duration>, body: &str) -> PostError {
    let body: String = body
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    let body = body.trim();
    let reason = if body.is_empty() {
        format!("Slack answered {status}")
    } else {
        format!("Slack answered {status}: {body}")
    };
    let cause = if status == StatusCode::TOO_MANY_REQUESTS {
        RetryCause::RateLimited
    } else if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
        RetryCause::ServerError
    } else {
        return PostError::Rejected(reason);
    };
    PostError::Retryable {
        reason,
        retry_after,
        cause,
    }
}

/// The delay a `Retry-After` header asks for: seconds, or an HTTP date (a date in the past is
/// no delay). `None` when absent or unreadable.
pub fn retry_after(value: Option<&HeaderValue>, now: DateTime<Utc>) -> Option<Duration> {
    let text = value?.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(text).ok()?.with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::http::HeaderMap;
    use axum::response::IntoResponse;

    use super::*;

    #[test]
    fn answers_are_retryable_or_rejected() {
        let retryable = |status: u16| {
            matches!(
                classify(StatusCode::from_u16(status).expect("status"), None, ""),
                PostError::Retryable { .. }
            )
        };
        for status in [429, 408, 500, 502, 503, 504] {
            assert!(retryable(status), "{status} is retried");
        }
        for status in [400, 401, 403, 404, 410, 413, 301, 302] {
            assert!(!retryable(status), "{status} is not retried");
        }
        assert_eq!(
            classify(StatusCode::BAD_REQUEST, None, "invalid_payload\n"),
            PostError::Rejected("Slack answered 400 Bad Request: invalid_payload".into())
        );
        assert_eq!(
            classify(
                StatusCode::TOO_MANY_REQUESTS,
                Some(Duration::from_secs(3)),
                ""
            ),
            PostError::Retryable {
                reason: "Slack answered 429 Too Many Requests".into(),
                retry_after: Some(Duration::from_secs(3)),
                cause: RetryCause::RateLimited,
            }
        );
        let long = "x".repeat(1000);
        let PostError::Rejected(r) = classify(StatusCode::GONE, None, &long) else {
            panic!("rejected")
        };
        assert!(r.len() < 260, "the body is cut: {r}");
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now = DateTime::parse_from_rfc3339("2026-11-29T08:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let h = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(
            retry_after(Some(&h("1")), now),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            retry_after(Some(&h(" 30 ")), now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after(Some(&h("Sun, 29 Nov 2026 08:00:05 GMT")), now),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            retry_after(Some(&h("Sun, 29 Nov 2026 07:00:00 GMT")), now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(Some(&h("soon")), now), None);
        assert_eq!(retry_after(None, now), None);
    }

    #[test]
    fn only_http_urls_are_webhooks_and_none_is_shown() {
        let secret = |s: &str| SecretString::from(s.to_string());
        let t = Duration::from_secs(1);
        for bad in ["", "hooks.slack.com/services/T/B/SECRET", "ftp://h/SECRET"] {
            let err = Webhook::new(&secret(bad), t).expect_err(bad).to_string();
            assert!(!err.contains("SECRET"), "{err}");
        }
        let w =
            Webhook::new(&secret("https://hooks.slack.com/services/T/B/SECRET"), t).expect("valid");
        assert!(!format!("{w:?}").contains("SECRET"));
    }

    /// A local server standing in for Slack: answers `status` with `body` and `Retry-After: 2`,
    /// and keeps the JSON it received.
    async fn slack(
        status: u16,
        body: &'static str,
    ) -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        let app = axum::Router::new().route(
            "/services/T0/B0/SECRET",
            axum::routing::post(move |headers: HeaderMap, body_in: String| {
                let g = g.clone();
                async move {
                    assert_eq!(
                        headers.get("content-type").and_then(|v| v.to_str().ok()),
                        Some("application/json")
                    );
                    let v = serde_json::from_str(&body_in).expect("json");
                    g.lock().expect("lock").push(v);
                    (
                        StatusCode::from_u16(status).expect("status"),
                        [("retry-after", "2")],
                        body,
                    )
                        .into_response()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!(
            "http://{}/services/T0/B0/SECRET",
            listener.local_addr().expect("addr")
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (url, got)
    }

    #[tokio::test]
    async fn posts_json_and_reads_the_answer() {
        let msg = serde_json::json!({"text": "hi", "blocks": []});
        let t = Duration::from_secs(5);
        let (url, got) = slack(200, "ok").await;
        let w = Webhook::new(&SecretString::from(url), t).expect("webhook");
        w.post(&msg).await.expect("posted");
        assert_eq!(
            got.lock().expect("lock").as_slice(),
            std::slice::from_ref(&msg)
        );

        let (url, _) = slack(429, "rate_limited").await;
        let w = Webhook::new(&SecretString::from(url), t).expect("webhook");
        assert_eq!(
            w.post(&msg).await,
            Err(PostError::Retryable {
                reason: "Slack answered 429 Too Many Requests: rate_limited".into(),
                retry_after: Some(Duration::from_secs(2)),
                cause: RetryCause::RateLimited,
            })
        );
        let (url, _) = slack(404, "no_service").await;
        let w = Webhook::new(&SecretString::from(url), t).expect("webhook");
        assert_eq!(
            w.post(&msg).await,
            Err(PostError::Rejected(
                "Slack answered 404 Not Found: no_service".into()
            ))
        );
    }

    /// reqwest's errors name the URL; ours must not.
    #[tokio::test]
    async fn transport_errors_do_not_show_the_url() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let url = format!("http://127.0.0.1:{port}/services/T0/B0/SECRET");
        let w = Webhook::new(&SecretString::from(url), Duration::from_secs(2)).expect("webhook");
        let err = w
            .post(&serde_json::json!({"text": "x"}))
            .await
            .expect_err("nothing listens");
        let PostError::Retryable { reason, cause, .. } = &err else {
            panic!("retryable: {err:?}")
        };
        assert_eq!(*cause, RetryCause::Transport);
        assert!(
            !reason.contains("SECRET") && !reason.contains("/services/"),
            "{reason}"
        );
        assert!(
            reason.starts_with("posting to the Slack webhook failed"),
            "{reason}"
        );
    }
}

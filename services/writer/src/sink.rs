//! Where line protocol goes: InfluxDB API v2 (`influxdb2` crate), InfluxDB API v1 (`/write`),
//! or a line-protocol file (the lifecycle crate's [`FileSink`]). [`AnySink`] picks one by
//! configuration and implements the lifecycle crate's [`Sink`] trait.
//!
//! Errors are classified for the retry policy: 5xx, 429 and transport errors are
//! [`SinkError::Retryable`] (with the server's `Retry-After` where we can read it), and so are
//! 401, 403 and 404 (configuration errors an operator fixes); other 4xx are
//! [`SinkError::Permanent`] (bad data: retrying cannot fix it). A 413 is split in halves by
//! [`AnySink`]'s write before it gives up.

use std::path::Path;
use std::time::Duration;

use lifecycle::{FileSink, Sink, SinkError};
use secrecy::{ExposeSecret, SecretString};

/// 5xx, 429 and 408 are retried, and so are 401, 403 and 404: a wrong token, a missing
/// permission or a missing database/bucket is a configuration error an operator fixes, not
/// bad data, and dead-lettering every run meanwhile would drain them all out of the pipeline.
/// The other 4xx (400, 413 for a single line, 422: the points themselves) are permanent.
fn error_from_status(status: u16, body: String, retry_after: Option<Duration>) -> SinkError {
    if status >= 500 || matches!(status, 401 | 403 | 404 | 408 | 429) {
        SinkError::Retryable {
            message: format!("HTTP {status}: {}", body.trim()),
            retry_after,
        }
    } else {
        SinkError::Permanent {
            status,
            message: body.trim().to_string(),
        }
    }
}

/// InfluxDB API v2 through the `influxdb2` crate (`/api/v2/write`, precision ns).
pub struct InfluxV2Sink {
    client: influxdb2::Client,
    org: String,
    bucket: String,
}

impl InfluxV2Sink {
    /// A sink for `url` (e.g. `http://127.0.0.1:8086`), organisation, bucket and token.
    pub fn new(
        url: &str,
        org: &str,
        bucket: &str,
        token: &SecretString,
    ) -> Result<Self, anyhow::Error> {
        let client = influxdb2::ClientBuilder::new(url, org, token.expose_secret())
            .build()
            .map_err(|e| anyhow::anyhow!("invalid InfluxDB v2 settings for {url}: {e}"))?;
        Ok(Self {
            client,
            org: org.to_string(),
            bucket: bucket.to_string(),
        })
    }
}

impl Sink for InfluxV2Sink {
    async fn write(&self, lines: &[u8]) -> Result<(), SinkError> {
        use influxdb2::api::write::TimestampPrecision;
        use influxdb2::RequestError;
        let body = lines.to_vec();
        match self
            .client
            .write_line_protocol_with_precision(
                &self.org,
                &self.bucket,
                body,
                TimestampPrecision::Nanoseconds,
            )
            .await
        {
            Ok(()) => Ok(()),
            // The crate drops the response headers, so there is no Retry-After to honour here.
            Err(RequestError::Http { status, text }) => {
                Err(error_from_status(status.as_u16(), text, None))
            }
            Err(e) => Err(SinkError::Retryable {
                message: e.to_string(),
                retry_after: None,
            }),
        }
    }
}

/// InfluxDB API v1 (`POST /write?db=&rp=&precision=ns`, basic auth): InfluxDB 1.x and 3.x.
pub struct InfluxV1Sink {
    http: reqwest::Client,
    write_url: String,
    database: String,
    retention_policy: Option<String>,
    username: Option<String>,
    password: Option<SecretString>,
}

impl InfluxV1Sink {
    /// A sink writing to database `database` at `url` (e.g. `http://127.0.0.1:8086`).
    pub fn new(
        url: &str,
        database: &str,
        retention_policy: Option<String>,
        username: Option<String>,
        password: Option<SecretString>,
    ) -> Result<Self, anyhow::Error> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self {
            http,
            write_url: format!("{}/write", url.trim_end_matches('/')),
            database: database.to_string(),
            retention_policy,
            username,
            password,
        })
    }
}

impl Sink for InfluxV1Sink {
    async fn write(&self, lines: &[u8]) -> Result<(), SinkError> {
        let mut query = vec![("db", self.database.as_str()), ("precision", "ns")];
        if let Some(rp) = &self.retention_policy {
            query.push(("rp", rp.as_str()));
        }
        let mut req = self
            .http
            .post(&self.write_url)
            .query(&query)
            .body(lines.to_vec());
        if let Some(user) = &self.username {
            req = req.basic_auth(user, self.password.as_ref().map(|p| p.expose_secret()));
        }
        let resp = req.send().await.map_err(|e| SinkError::Retryable {
            message: format!("InfluxDB v1 transport error: {}", without_url(&e)),
            retry_after: None,
        })?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = resp.text().await.unwrap_or_default();
        Err(error_from_status(status, body, retry_after))
    }
}

/// reqwest's error text without the URL (it may carry credentials).
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(url) = e.url() {
        s = s.replace(url.as_str(), "<url>");
    }
    s
}

/// One of the sinks, chosen by configuration.
pub enum AnySink {
    /// InfluxDB API v2.
    V2(InfluxV2Sink),
    /// InfluxDB API v1.
    V1(InfluxV1Sink),
    /// Line-protocol file.
    File(FileSink),
}

impl AnySink {
    /// A file sink at `path` (created or appended to).
    pub fn file(path: &Path) -> std::io::Result<Self> {
        Ok(AnySink::File(FileSink::open(path)?))
    }

    /// A short description for logs (no secrets).
    pub fn describe(&self) -> String {
        match self {
            AnySink::V2(s) => format!("influxdb v2 bucket {}", s.bucket),
            AnySink::V1(s) => format!("influxdb v1 database {}", s.database),
            AnySink::File(s) => format!("file {}", s.path().display()),
        }
    }

    async fn write_once(&self, lines: &[u8]) -> Result<(), SinkError> {
        match self {
            AnySink::V2(s) => s.write(lines).await,
            AnySink::V1(s) => s.write(lines).await,
            AnySink::File(s) => s.write(lines).await,
        }
    }
}

impl Sink for AnySink {
    /// Writes, splitting the batch in halves (at line boundaries) when the server answers 413.
    async fn write(&self, lines: &[u8]) -> Result<(), SinkError> {
        let mut pending: Vec<&[u8]> = vec![lines];
        while let Some(batch) = pending.pop() {
            match self.write_once(batch).await {
                Err(SinkError::Permanent { status: 413, .. }) if batch.len() > 1 => {
                    let Some((a, b)) = split_lines(batch) else {
                        return Err(SinkError::Permanent {
                            status: 413,
                            message: "a single line is larger than the server accepts".into(),
                        });
                    };
                    pending.push(b);
                    pending.push(a);
                }
                other => other?,
            }
        }
        Ok(())
    }
}

/// Splits line protocol near its middle at a newline; `None` for a single line.
fn split_lines(lines: &[u8]) -> Option<(&[u8], &[u8])> {
    let mid = lines.len() / 2;
    let cut = lines[..mid].iter().rposition(|b| *b == b'\n').or_else(|| {
        lines[mid..]
            .iter()
            .position(|b| *b == b'\n')
            .map(|p| p + mid)
    })? + 1;
    if cut >= lines.len() {
        return None;
    }
    Some(lines.split_at(cut))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_line_boundaries() {
        let (a, b) = split_lines(b"a 1\nb 2\nc 3\n").expect("splits");
        assert_eq!(a, b"a 1\n");
        assert_eq!(b, b"b 2\nc 3\n");
        assert!(split_lines(b"only 1\n").is_none());
    }

    #[test]
    fn classifies_statuses() {
        assert!(matches!(
            error_from_status(503, String::new(), None),
            SinkError::Retryable { .. }
        ));
        assert!(matches!(
            error_from_status(429, String::new(), None),
            SinkError::Retryable { .. }
        ));
        assert!(matches!(
            error_from_status(400, String::new(), None),
            SinkError::Permanent { status: 400, .. }
        ));
        assert!(matches!(
            error_from_status(404, String::new(), None),
            SinkError::Retryable { .. }
        ));
    }

    #[tokio::test]
    async fn file_sink_appends() {
        let dir = std::env::temp_dir().join(format!("lt-file-sink-{}", uuid::Uuid::new_v4()));
        let path = dir.join("out.lp");
        let sink = AnySink::file(&path).expect("open");
        sink.write(b"m v=1i 1\n").await.expect("write");
        sink.write(b"m v=2i 2\n").await.expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text, "m v=1i 1\nm v=2i 2\n");
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// The longest wait between two write attempts without a `Retry-After`.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Writes `lines`, retrying retryable errors with capped exponential backoff (0.5 s doubling to
/// 30 s, honouring `Retry-After`) until it succeeds, the error is permanent, or `cancel` fires.
/// Each failed attempt is logged once (the batch may carry many messages' points).
pub async fn write_with_retry(
    sink: &impl Sink,
    lines: &[u8],
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<(), WriteFailure> {
    use backoff::backoff::Backoff;
    let mut policy = backoff::ExponentialBackoff {
        initial_interval: Duration::from_millis(500),
        max_interval: MAX_BACKOFF,
        max_elapsed_time: None,
        ..backoff::ExponentialBackoff::default()
    };
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        match sink.write(lines).await {
            Ok(()) => {
                if attempt > 1 {
                    tracing::info!(attempt, "write succeeded after retrying");
                }
                return Ok(());
            }
            Err(SinkError::Permanent { status, message }) => {
                return Err(WriteFailure::Permanent(format!("HTTP {status}: {message}")));
            }
            Err(SinkError::Retryable {
                message,
                retry_after,
            }) => {
                // The policy's jitter (±50 %) may push an interval past its maximum; the cap is
                // a cap. A server's Retry-After is honoured up to 5 min.
                let wait = match retry_after {
                    Some(d) => d.min(Duration::from_secs(300)),
                    None => policy
                        .next_backoff()
                        .unwrap_or(MAX_BACKOFF)
                        .min(MAX_BACKOFF),
                };
                metrics::counter!("loadtest_writer_write_retries_total").increment(1);
                tracing::warn!(attempt, retry_in_ms = wait.as_millis() as u64, error = %message, "write failed; retrying");
                tokio::select! {
                    _ = cancel.cancelled() => return Err(WriteFailure::Cancelled),
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// Why [`write_with_retry`] gave up.
#[derive(Debug, thiserror::Error)]
pub enum WriteFailure {
    /// The destination rejected the data; the reason is for the dead-letter header.
    #[error("write rejected: {0}")]
    Permanent(String),
    /// Shutdown came first; nothing was acked.
    #[error("shutdown before the write succeeded")]
    Cancelled,
}

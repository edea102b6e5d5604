//! Where line protocol goes: InfluxDB API v2 (`influxdb2` crate), InfluxDB API v1 (`/write`),
//! or a line-protocol file (the lifecycle crate's [`FileSink`]). [`AnySink`] picks one by
//! configuration and implements the lifecycle crate's [`Sink`] trait.
//!
//! Errors are classified for the retry policy: 5xx, 408, 429 and transport errors are
//! [`SinkError::Retryable`] (with the server's `Retry-After` where we can read it), and so are
//! 401, 403 and 404: a wrong token, a missing permission or a missing database is a
//! configuration error an operator fixes, so [`write_with_retry`] keeps retrying (a warning per
//! attempt) rather than dead-letter every run meanwhile. The other 4xx (400, 422, a 413 for a
//! single line) are [`SinkError::Permanent`]: bad data, which retrying cannot fix. A 413 is split
//! in halves by [`AnySink::write`] before it gives up.

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
#[derive(Debug)]
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
    gzip: bool,
}

/// Bodies from this size on are gzipped when the sink gzips, bytes.
const GZIP_FROM_BYTES: usize = 1024;

/// `lines` gzipped (fast level: a tick's 10 MB in about 0.1 s, ten times smaller).
fn gzip(lines: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(
        Vec::with_capacity(lines.len() / 8),
        flate2::Compression::fast(),
    );
    e.write_all(lines)?;
    e.finish()
}

impl std::fmt::Debug for InfluxV1Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry credentials: not printed.
        f.debug_struct("InfluxV1Sink")
            .field("database", &self.database)
            .field("retention_policy", &self.retention_policy)
            .finish_non_exhaustive()
    }
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
            gzip: false,
        })
    }

    /// Gzips request bodies of 1 KiB and more (`Content-Encoding: gzip`, which InfluxDB 1.x and
    /// 3.x accept).
    pub fn gzip(mut self, on: bool) -> Self {
        self.gzip = on;
        self
    }
}

impl Sink for InfluxV1Sink {
    async fn write(&self, lines: &[u8]) -> Result<(), SinkError> {
        let mut query = vec![("db", self.database.as_str()), ("precision", "ns")];
        if let Some(rp) = &self.retention_policy {
            query.push(("rp", rp.as_str()));
        }
        let mut req = self.http.post(&self.write_url).query(&query);
        req = if self.gzip && lines.len() >= GZIP_FROM_BYTES {
            // Off the runtime's threads: the consume loop polls this write.
            let plain = lines.to_vec();
            let zipped = tokio::task::spawn_blocking(move || gzip(&plain))
                .await
                .map_err(|e| SinkError::Retryable {
                    message: format!("gzip task: {e}"),
                    retry_after: None,
                })?
                .map_err(|e| SinkError::Retryable {
                    message: format!("gzip: {e}"),
                    retry_after: None,
                })?;
            req.header(reqwest::header::CONTENT_ENCODING, "gzip")
                .body(zipped)
        } else {
            req.body(lines.to_vec())
        };
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
#[derive(Debug)]
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

/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Writes `lines`, retrying every [`SinkError::Retryable`] (5xx, 408, 429, transport errors, and
/// the configuration errors 401, 403 and 404) until it succeeds, the error is permanent, or
/// `cancel` fires. Waits follow the kit's backoff (0.5 s doubling, with jitter, capped at
/// [`MAX_BACKOFF`]); a server's `Retry-After` is honoured instead, up to 5 min. Each failed
/// attempt is logged once at warn level (the batch may carry many messages' points).
///
/// Errors: [`WriteFailure::Permanent`] with the reason for the dead-letter header (a
/// [`SinkError::Permanent`]: 400, 422, …), or [`WriteFailure::Cancelled`].
pub async fn write_with_retry(
    sink: &impl Sink,
    lines: &[u8],
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<(), WriteFailure> {
    let mut backoff = kit::backoff::Backoff::new(Duration::from_millis(500), MAX_BACKOFF);
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
                let wait = match retry_after {
                    Some(d) => d.min(MAX_RETRY_AFTER),
                    None => backoff.next_delay(),
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

#[cfg(test)]
mod retry_tests {
    use std::sync::Mutex;

    use tokio::time::Instant;
    use tokio_util::sync::CancellationToken;

    use super::*;

    /// A sink answering with `script`'s statuses in turn (then 204), recording when it was called.
    struct Scripted {
        script: Mutex<Vec<(u16, Option<Duration>)>>,
        calls: Mutex<Vec<Instant>>,
    }

    impl Scripted {
        fn new(mut script: Vec<(u16, Option<Duration>)>) -> Self {
            script.reverse();
            Self {
                script: Mutex::new(script),
                calls: Mutex::new(Vec::new()),
            }
        }

        fn waits(&self) -> Vec<Duration> {
            let calls = self.calls.lock().expect("lock");
            calls.windows(2).map(|w| w[1] - w[0]).collect()
        }
    }

    impl Sink for Scripted {
        async fn write(&self, _lines: &[u8]) -> Result<(), SinkError> {
            self.calls.lock().expect("lock").push(Instant::now());
            match self.script.lock().expect("lock").pop() {
                None => Ok(()),
                Some((status, retry_after)) => {
                    Err(error_from_status(status, "scripted".into(), retry_after))
                }
            }
        }
    }

    /// 401, 403 and 404 are configuration errors: retried (as the docs now say), not
    /// dead-lettered.
    #[tokio::test(start_paused = true)]
    async fn configuration_errors_are_retried_until_fixed() {
        let sink = Scripted::new(vec![(401, None), (403, None), (404, None), (503, None)]);
        write_with_retry(&sink, b"m v=1i 1\n", &CancellationToken::new())
            .await
            .expect("written once the configuration is fixed");
        assert_eq!(sink.waits().len(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn bad_data_is_permanent_at_once() {
        for status in [400, 422] {
            let sink = Scripted::new(vec![(status, None)]);
            let err = write_with_retry(&sink, b"m v=1i 1\n", &CancellationToken::new())
                .await
                .expect_err("permanent");
            assert!(
                matches!(&err, WriteFailure::Permanent(r) if r.starts_with(&format!("HTTP {status}"))),
                "{err}"
            );
            assert!(sink.waits().is_empty(), "not retried");
        }
    }

    // Tokio's paused clock rounds a sleep up to the next millisecond: upper bounds allow it.
    const TICK: Duration = Duration::from_millis(1);

    #[tokio::test(start_paused = true)]
    async fn waits_grow_to_the_cap_and_retry_after_is_honoured_up_to_5_min() {
        let mut script = vec![(503, None); 9];
        script.push((429, Some(Duration::from_secs(7))));
        script.push((503, Some(Duration::from_secs(3600))));
        let sink = Scripted::new(script);
        write_with_retry(&sink, b"m v=1i 1\n", &CancellationToken::new())
            .await
            .expect("written");
        let waits = sink.waits();
        assert_eq!(waits.len(), 11, "{waits:?}");
        assert!(
            waits[0] >= Duration::from_millis(500) && waits[0] <= Duration::from_secs(1) + TICK
        );
        assert!(
            waits[..9].iter().all(|w| *w <= MAX_BACKOFF + TICK),
            "{waits:?}"
        );
        assert!(waits[8] >= MAX_BACKOFF, "reaches the cap: {waits:?}");
        assert_eq!(waits[9], Duration::from_secs(7), "Retry-After: {waits:?}");
        assert_eq!(
            waits[10], MAX_RETRY_AFTER,
            "Retry-After is capped: {waits:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn cancel_stops_retrying() {
        let sink = Scripted::new(vec![(503, Some(Duration::from_secs(60)))]);
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            c.cancel();
        });
        let err = write_with_retry(&sink, b"m v=1i 1\n", &cancel)
            .await
            .expect_err("cancelled");
        assert!(matches!(err, WriteFailure::Cancelled));
    }
}

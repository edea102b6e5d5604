//! [`Writer`]: line protocol to the v1 or v2 write API, one attempt per call.

use std::time::Duration;

use bytes::Bytes;
use reqwest::{header, Method, Url};

use crate::body;
use crate::endpoint::Endpoint;
use crate::Error;

/// Bodies from this size on are gzipped when the writer gzips, bytes.
pub const GZIP_FROM_BYTES: usize = 1024;

/// Time a write may take, body included, before it fails as [`Error::Unavailable`] (InfluxDB
/// 1.x's own write timeout is 10 s).
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Which write API, and where in the store the points go: the one difference between a v1 and
/// a v2 write (with the [`crate::Auth`] each store takes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteApi {
    /// `POST /write?db=&rp=&precision=ns`: InfluxDB 1.x, and 3.x's v1 compatibility API.
    V1 {
        /// Database (`db`).
        database: String,
        /// Retention policy (`rp`); the database's default when `None`.
        retention_policy: Option<String>,
    },
    /// `POST /api/v2/write?org=&bucket=&precision=ns`: InfluxDB 2.x, 3.x, Cloud,
    /// VictoriaMetrics.
    V2 {
        /// Organisation (`org`; left out when empty: InfluxDB 3 and VictoriaMetrics ignore it).
        org: String,
        /// Bucket (`bucket`).
        bucket: String,
    },
}

/// Writes line protocol (newline-terminated lines, nanosecond timestamps) to one store.
#[derive(Debug, Clone)]
pub struct Writer {
    endpoint: Endpoint,
    api: WriteApi,
    url: Url,
    gzip: bool,
    timeout: Duration,
}

impl Writer {
    /// A writer to `api` on `endpoint`; no gzip, a 30 s timeout per write.
    pub fn new(endpoint: Endpoint, api: WriteApi) -> Self {
        let url = match &api {
            WriteApi::V1 {
                database,
                retention_policy,
            } => endpoint.url(
                "write",
                &[
                    ("db", database),
                    ("rp", retention_policy.as_deref().unwrap_or("")),
                    ("precision", "ns"),
                ],
            ),
            WriteApi::V2 { org, bucket } => endpoint.url(
                "api/v2/write",
                &[("org", org), ("bucket", bucket), ("precision", "ns")],
            ),
        };
        Self {
            endpoint,
            api,
            url,
            gzip: false,
            timeout: WRITE_TIMEOUT,
        }
    }

    /// Gzips bodies of [`GZIP_FROM_BYTES`] and more (`Content-Encoding: gzip`, which InfluxDB
    /// 1.x, 2.x, 3.x and VictoriaMetrics accept): line protocol shrinks about ten times, which is
    /// what a remote store mostly waits for.
    pub fn gzip(mut self, on: bool) -> Self {
        self.gzip = on;
        self
    }

    /// The time one write may take, body included (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Where the writer writes, for logs (no credential): `InfluxDB v1 database loadtest at
    /// http://127.0.0.1:8086/`.
    pub fn describe(&self) -> String {
        let at = self.endpoint.display_url();
        match &self.api {
            WriteApi::V1 { database, .. } => format!("InfluxDB v1 database {database} at {at}"),
            WriteApi::V2 { bucket, .. } => format!("InfluxDB v2 bucket {bucket} at {at}"),
        }
    }

    /// Writes `lines`, the buffers in order as one body, in one request. Done (durable at the
    /// store) when this returns `Ok`. Gzipping runs off the async runtime's threads.
    ///
    /// Errors: [`Error::Unavailable`] (transport error, timeout, 5xx, 408, 429; with the
    /// store's `Retry-After`), [`Error::Auth`] (401, 403), [`Error::NotFound`] (404: no such
    /// database or bucket), [`Error::Rejected`] (400, 413, 422, …: the points or the body's
    /// size).
    pub async fn write(&self, lines: &[Bytes]) -> Result<(), Error> {
        let len: usize = lines.iter().map(Bytes::len).sum();
        let mut req = self
            .endpoint
            .request(Method::POST, self.url.clone(), self.timeout)
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8");
        req = if self.gzip && len >= GZIP_FROM_BYTES {
            let chunks = lines.to_vec();
            let zipped = tokio::task::spawn_blocking(move || body::gzip(&chunks))
                .await
                .map_err(|e| Error::Unavailable {
                    message: format!("gzip task: {e}"),
                    retry_after: None,
                })?
                .map_err(|e| Error::Unavailable {
                    message: format!("gzip: {e}"),
                    retry_after: None,
                })?;
            req.header(header::CONTENT_ENCODING, "gzip").body(zipped)
        } else {
            req.body(body::plain(lines))
        };
        self.endpoint.send(req).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Auth;

    #[test]
    fn each_api_has_its_write_url() {
        let e = Endpoint::new("http://h:8086", Auth::None).expect("valid");
        let v1 = Writer::new(
            e.clone(),
            WriteApi::V1 {
                database: "db".into(),
                retention_policy: Some("week".into()),
            },
        );
        assert_eq!(
            v1.url.as_str(),
            "http://h:8086/write?db=db&rp=week&precision=ns"
        );
        assert_eq!(v1.describe(), "InfluxDB v1 database db at http://h:8086/");
        let v2 = Writer::new(
            e,
            WriteApi::V2 {
                org: "o".into(),
                bucket: "b".into(),
            },
        );
        assert_eq!(
            v2.url.as_str(),
            "http://h:8086/api/v2/write?org=o&bucket=b&precision=ns"
        );
    }
}

//! [`QueryClient`]: InfluxQL over `/query`, the result as [`Series`].

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Method;
use serde::{Deserialize, Serialize};

use crate::endpoint::{explanation, transport_error, Endpoint};
use crate::Error;

/// How the `time` column comes back (`epoch`): RFC 3339 strings unless one is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Epoch {
    /// Integer nanoseconds since the Unix epoch.
    Nanoseconds,
    /// Integer microseconds.
    Microseconds,
    /// Integer milliseconds.
    Milliseconds,
    /// Integer seconds.
    Seconds,
}

impl Epoch {
    fn as_param(self) -> &'static str {
        match self {
            Epoch::Nanoseconds => "ns",
            Epoch::Microseconds => "u",
            Epoch::Milliseconds => "ms",
            Epoch::Seconds => "s",
        }
    }
}

/// One series of a query's result: a measurement (and, with `GROUP BY`, one tag set), its
/// columns and its rows, each row a value per column (`time` first; `null` where a point has no
/// such field).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// Measurement name (or `databases`, `measurements`, … for `SHOW` statements).
    pub name: String,
    /// The `GROUP BY` tags of this series; empty without `GROUP BY`.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Column names, in row order.
    pub columns: Vec<String>,
    /// The rows.
    #[serde(default)]
    pub values: Vec<Vec<serde_json::Value>>,
}

impl Series {
    /// The index of column `name` in each row.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }
}

/// Default time a query may take, answer included.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Default most rows a query may return, over all its series.
const ROW_LIMIT: usize = 10_000;

/// Default most bytes an answer may take.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// Runs InfluxQL queries against one database of one store through `GET /query`: InfluxDB 1.x,
/// InfluxDB 2.x through its v1 compatibility API (the database and retention policy map to a
/// bucket; authenticate with [`crate::Auth::Token`]), InfluxDB 3 (its v1 API). Every query has
/// a timeout and a row limit.
///
/// It sends `GET`, which InfluxDB 1.8+ refuses for statements that change data; the read-only
/// credential is what keeps an older store (1.6 warns and runs them) unchanged.
#[derive(Debug, Clone)]
pub struct QueryClient {
    endpoint: Endpoint,
    database: String,
    retention_policy: Option<String>,
    timeout: Duration,
    row_limit: usize,
    max_response_bytes: usize,
    epoch: Option<Epoch>,
}

/// InfluxQL's answer: one result per statement.
#[derive(Debug, Deserialize)]
struct Answer {
    #[serde(default)]
    results: Vec<StatementResult>,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct StatementResult {
    #[serde(default)]
    series: Vec<PartialSeries>,
    error: Option<String>,
    #[serde(default)]
    partial: bool,
}

#[derive(Debug, Deserialize)]
struct PartialSeries {
    #[serde(flatten)]
    series: Series,
    #[serde(default)]
    partial: bool,
}

impl QueryClient {
    /// Queries of `database` on `endpoint`: its default retention policy, a 10 s timeout, at
    /// most 10,000 rows and 64 MiB per answer, times as RFC 3339 strings.
    pub fn new(endpoint: Endpoint, database: impl Into<String>) -> Self {
        Self {
            endpoint,
            database: database.into(),
            retention_policy: None,
            timeout: QUERY_TIMEOUT,
            row_limit: ROW_LIMIT,
            max_response_bytes: MAX_RESPONSE_BYTES,
            epoch: None,
        }
    }

    /// Queries this retention policy (`rp`) instead of the database's default.
    pub fn retention_policy(mut self, rp: Option<String>) -> Self {
        self.retention_policy = rp;
        self
    }

    /// The time a query may take, answer included (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The most rows a query may return, over all its series (default 10,000).
    pub fn row_limit(mut self, rows: usize) -> Self {
        self.row_limit = rows;
        self
    }

    /// The most bytes an answer may take (default 64 MiB).
    pub fn max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_response_bytes = bytes;
        self
    }

    /// Times as integers of `epoch` instead of RFC 3339 strings.
    pub fn epoch(mut self, epoch: Epoch) -> Self {
        self.epoch = Some(epoch);
        self
    }

    /// Runs `influxql` (one statement or several, `;`-separated) and returns every statement's
    /// series, in order. User values belong in it only as checked values or escaped literals:
    /// this sends the text as it is.
    ///
    /// Errors: [`Error::Unavailable`] (unreachable, timeout, 5xx, 429: with `Retry-After`),
    /// [`Error::Auth`], [`Error::NotFound`] (no such database or retention policy, or no
    /// `/query` on the store), [`Error::BadQuery`] (does not parse, or a statement failed),
    /// [`Error::TooManyRows`], [`Error::Response`] (not InfluxQL's JSON, or over the size limit).
    pub async fn query(&self, influxql: &str) -> Result<Vec<Series>, Error> {
        let mut params = vec![("db", self.database.as_str()), ("q", influxql)];
        if let Some(rp) = &self.retention_policy {
            params.push(("rp", rp));
        }
        if let Some(e) = self.epoch {
            params.push(("epoch", e.as_param()));
        }
        let url = self.endpoint.url("query", &params);
        let req = self.endpoint.request(Method::GET, url, self.timeout);
        let resp = match self.endpoint.send(req).await {
            Err(Error::Rejected { message, .. }) => return Err(Error::BadQuery { message }),
            other => other?,
        };
        let body = read_bounded(resp, self.max_response_bytes).await?;
        self.series(&body)
    }

    /// The series of an answer, or the error one of its statements ended in.
    fn series(&self, body: &[u8]) -> Result<Vec<Series>, Error> {
        let answer: Answer = serde_json::from_slice(body).map_err(|e| Error::Response {
            message: format!(
                "{e}: {}",
                explanation(&String::from_utf8_lossy(&body[..body.len().min(200)]))
                    .unwrap_or_default()
            ),
        })?;
        if let Some(message) = answer.error {
            return Err(Error::BadQuery { message });
        }
        let mut out = Vec::new();
        let mut rows = 0usize;
        for r in answer.results {
            if let Some(message) = r.error {
                return Err(statement_error(message));
            }
            let partial = r.partial || r.series.iter().any(|s| s.partial);
            for s in r.series {
                rows += s.series.values.len();
                out.push(s.series);
            }
            if partial {
                return Err(Error::TooManyRows { limit: rows });
            }
            if rows > self.row_limit {
                return Err(Error::TooManyRows {
                    limit: self.row_limit,
                });
            }
        }
        Ok(out)
    }
}

/// A statement's error: [`Error::NotFound`] for a missing database or retention policy,
/// [`Error::BadQuery`] for the rest.
fn statement_error(message: String) -> Error {
    if message.starts_with("database not found")
        || message.starts_with("retention policy not found")
    {
        Error::NotFound { message }
    } else {
        Error::BadQuery { message }
    }
}

/// The whole body, or [`Error::Response`] once it passes `limit` bytes.
async fn read_bounded(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, Error> {
    let mut buf = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| transport_error(&e))? {
        if buf.len() + chunk.len() > limit {
            return Err(Error::Response {
                message: format!("the answer is larger than {limit} bytes"),
            });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Auth;

    fn client() -> QueryClient {
        QueryClient::new(
            Endpoint::new("http://h:8086", Auth::None).expect("valid"),
            "db",
        )
        .row_limit(3)
    }

    #[test]
    fn series_of_every_statement_in_order() {
        let body = br#"{"results":[
            {"statement_id":0,"series":[{"name":"m","columns":["time","v"],"values":[[1,2],[3,null]]}]},
            {"statement_id":1,"series":[{"name":"n","tags":{"k":"x"},"columns":["time","w"],"values":[[5,"s"]]}]},
            {"statement_id":2}
        ]}"#;
        let series = client().series(body).expect("series");
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].name, "m");
        assert_eq!(series[0].column("v"), Some(1));
        assert_eq!(series[0].values[1][1], serde_json::Value::Null);
        assert_eq!(series[1].tags["k"], "x");
        assert_eq!(series[1].values[0][1], serde_json::json!("s"));
    }

    #[test]
    fn statement_errors_rows_and_garbage_are_typed() {
        let c = client();
        let missing = br#"{"results":[{"statement_id":0,"error":"database not found: db"}]}"#;
        assert!(matches!(c.series(missing), Err(Error::NotFound { .. })));
        let failed = br#"{"results":[{"statement_id":0,"error":"unsupported call: nope"}]}"#;
        assert!(
            matches!(c.series(failed), Err(Error::BadQuery { message }) if message.contains("nope"))
        );
        let four = br#"{"results":[{"series":[{"name":"m","columns":["time"],"values":[[1],[2],[3],[4]]}]}]}"#;
        assert_eq!(c.series(four), Err(Error::TooManyRows { limit: 3 }));
        let partial = br#"{"results":[{"series":[{"name":"m","columns":["time"],"values":[[1]]}],"partial":true}]}"#;
        assert!(matches!(c.series(partial), Err(Error::TooManyRows { .. })));
        assert!(matches!(c.series(b"<html>"), Err(Error::Response { .. })));
    }
}

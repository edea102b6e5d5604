//! Prometheus metrics of the API (`GET /metrics`, text format):
//! - `loadtest_api_http_requests_total{route, method, status}`: requests answered;
//! - `loadtest_api_publish_duration_seconds{kind}`: publish + confirm latency (histogram, s);
//! - `loadtest_api_publish_failures_total{reason}`: publishes that failed (`nacked`,
//!   `unroutable`, `timeout`, `unavailable`); `reason="nacked"` counts the confirms nacked;
//! - `loadtest_api_limited_total{limit}`: requests refused by a limit (`rate-limit`,
//!   `running-runs-limit`, `buffered-bytes-limit`, `server-busy`, `body-timeout`);
//! - `loadtest_api_connections`: connections open (gauge);
//! - `loadtest_api_connections_refused_total`: connections answered 503 above
//!   `http.max_connections`.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;

/// The process-wide recorder's handle: the kit's one Prometheus exporter.
pub use kit::metrics::handle;

/// Counts every answered request by matched route (never the raw path: uuids would explode
/// the series), method and status.
pub async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let response = next.run(req).await;
    metrics::counter!(
        "loadtest_api_http_requests_total",
        "route" => route,
        "method" => method,
        "status" => response.status().as_u16().to_string()
    )
    .increment(1);
    response
}

/// Records one publish.
pub fn publish_observed(kind: &'static str, started: Instant, failure: Option<&'static str>) {
    metrics::histogram!("loadtest_api_publish_duration_seconds", "kind" => kind)
        .record(started.elapsed().as_secs_f64());
    if let Some(reason) = failure {
        metrics::counter!("loadtest_api_publish_failures_total", "reason" => reason).increment(1);
    }
}

/// Counts a request refused by limit `limit`.
pub fn limited(limit: &'static str) {
    metrics::counter!("loadtest_api_limited_total", "limit" => limit).increment(1);
}

/// A connection is served.
pub fn connection_opened() {
    metrics::gauge!("loadtest_api_connections").increment(1.0);
}

/// A served connection ended.
pub fn connection_closed() {
    metrics::gauge!("loadtest_api_connections").decrement(1.0);
}

/// A connection above the cap was answered 503.
pub fn connection_refused() {
    metrics::counter!("loadtest_api_connections_refused_total").increment(1);
}

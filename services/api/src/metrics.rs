//! Prometheus metrics of the API (`GET /metrics`, text format):
//! - `loadtest_api_http_requests_total{route, method, status}`: requests answered;
//! - `loadtest_api_publish_duration_seconds{kind}`: publish + confirm latency (histogram, s);
//! - `loadtest_api_publish_failures_total{reason}`: publishes that failed (`nacked`,
//!   `unroutable`, `timeout`, `unavailable`); `reason="nacked"` counts the confirms nacked.

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

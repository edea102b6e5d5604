//! Prometheus metrics of the API (`GET /metrics`, text format):
//! - `loadtest_api_http_requests_total{route, method, status}`: requests answered;
//! - `loadtest_api_publish_duration_seconds{kind}`: publish + confirm latency (histogram, s);
//! - `loadtest_api_publish_failures_total{reason}`: publishes that failed (`nacked`,
//!   `unroutable`, `timeout`, `unavailable`); `reason="nacked"` counts the confirms nacked.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// The process-wide recorder's handle (installed on first use).
pub fn handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("duration_seconds".into()),
                    &[
                        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                        10.0,
                    ],
                )
                .ok()?
                .install_recorder()
                .ok()
        })
        .as_ref()
}

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

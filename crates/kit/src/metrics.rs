//! The Prometheus exporter: one process-wide recorder (the `metrics` crate's macros record into
//! it), rendered as Prometheus text by the services' `GET /metrics`.

use std::sync::OnceLock;

use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

/// Histogram buckets of every metric named `*_duration_seconds`, in seconds (1 ms to 60 s).
pub const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The process-wide recorder's handle, installed on first use with [`DURATION_BUCKETS`] for
/// `*_duration_seconds` (other histograms are summaries). `None` when another recorder was
/// installed first (metrics are then not ours to render).
pub fn handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("duration_seconds".into()),
                    DURATION_BUCKETS,
                )
                .ok()?
                .install_recorder()
                .ok()
        })
        .as_ref()
}

/// The metrics text now (empty when no recorder is ours).
pub fn render() -> String {
    handle().map(|h| h.render()).unwrap_or_default()
}

/// Serves `GET /metrics` (Prometheus text) and `GET /healthz` (`ok`) on `listen` until
/// `shutdown`, for a service with no HTTP server of its own. The bound address is logged (port 0
/// picks a free one). An address that cannot be bound is logged and the function returns: the
/// service goes on without metrics rather than stopping its work.
pub async fn serve(listen: String, shutdown: CancellationToken) {
    handle();
    let listener = match tokio::net::TcpListener::bind(&listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(listen = %listen, error = %e, "cannot serve metrics; going on without them");
            return;
        }
    };
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(url = %format!("http://{addr}/metrics"), "metrics listening");
    }
    let app = Router::new()
        .route("/metrics", get(|| async { render() }))
        .route("/healthz", get(|| async { "ok" }));
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_get_buckets() {
        assert!(handle().is_some());
        metrics::histogram!("kit_test_duration_seconds").record(0.02);
        let text = render();
        assert!(
            text.contains("kit_test_duration_seconds_bucket{le=\"0.025\"} 1"),
            "{text}"
        );
        assert!(std::ptr::eq(
            handle().expect("installed"),
            handle().expect("installed")
        ));
    }
}

//! Prometheus metrics of the writer, served at `GET /metrics` on `metrics.listen`:
//! - `loadtest_writer_messages_total{kind, outcome}`: deliveries by kind (`registered`, `stats`,
//!   `committed`, `unknown`) and outcome (`accepted`, `invalid`, `bad_token`);
//! - `loadtest_writer_points_written_total`: points written to the sink;
//! - `loadtest_writer_write_duration_seconds`: time to write one batch, retries included (s);
//! - `loadtest_writer_write_retries_total`: failed write attempts that were retried;
//! - `loadtest_writer_dead_lettered_total`: messages sent to the dead-letter queue;
//! - `loadtest_writer_runs_running`: runs held now.

use std::sync::OnceLock;

use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

/// The process-wide recorder's handle (installed on first use).
pub fn handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("duration_seconds".into()),
                    &[
                        0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                        60.0,
                    ],
                )
                .ok()?
                .install_recorder()
                .ok()
        })
        .as_ref()
}

/// Serves `/metrics` and `/healthz` on `listen` until `shutdown`. A listen address that cannot
/// be bound is logged and the writer goes on without metrics (it must not stop consuming).
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
        .route(
            "/metrics",
            get(|| async { handle().map(|h| h.render()).unwrap_or_default() }),
        )
        .route("/healthz", get(|| async { "ok" }));
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
}

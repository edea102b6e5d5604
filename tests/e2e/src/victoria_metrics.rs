//! VictoriaMetrics, the real server behind the writer's InfluxDB v2 sink in the tests (written
//! through `/api/v2/write`, read back with `/api/v1/export`).

/// VictoriaMetrics base URL.
pub const VM: &str = "http://127.0.0.1:8428";

/// Fails unless the shared VictoriaMetrics answers.
pub fn require_victoria_metrics() {
    crate::process::require_service(
        "127.0.0.1:8428",
        "victoria-metrics -storageDataPath /tmp/vm -httpListenAddr 127.0.0.1:8428 &",
    );
}

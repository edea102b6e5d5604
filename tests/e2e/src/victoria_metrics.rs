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

/// One series of VictoriaMetrics' `/api/v1/export`: its labels (`__name__` is the InfluxDB
/// measurement and field joined by `_`, e.g. `loadtest_summary_requests`; tags are labels), and
/// its values with their timestamps (Unix ms).
#[derive(Debug)]
pub struct Series {
    /// The series' labels.
    pub labels: serde_json::Map<String, serde_json::Value>,
    /// Its values.
    pub values: Vec<f64>,
    /// Its timestamps, Unix ms, one per value.
    pub timestamps: Vec<i64>,
}

impl Series {
    /// The value of label `key`, or `""`.
    pub fn label(&self, key: &str) -> &str {
        self.labels
            .get(key)
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
    }
}

/// The series of run `uuid` (label `event_id`) whose name matches the regex `names`, from the
/// VictoriaMetrics at `store` (flushed first, so that what was just written is there).
pub async fn export(
    http: &reqwest::Client,
    store: &str,
    uuid: &str,
    names: &str,
) -> anyhow::Result<Vec<Series>> {
    use anyhow::Context;
    use serde_json::Value;
    http.get(format!("{store}/internal/force_flush"))
        .send()
        .await?;
    let text = http
        .get(format!("{store}/api/v1/export"))
        .query(&[(
            "match[]",
            format!("{{__name__=~\"{names}\",event_id=\"{uuid}\"}}"),
        )])
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    let mut series = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).with_context(|| format!("export line {line}"))?;
        let nums = |key: &str| -> Vec<Value> { v[key].as_array().cloned().unwrap_or_default() };
        series.push(Series {
            labels: v["metric"].as_object().cloned().unwrap_or_default(),
            values: nums("values").iter().filter_map(Value::as_f64).collect(),
            timestamps: nums("timestamps")
                .iter()
                .filter_map(Value::as_i64)
                .collect(),
        });
    }
    Ok(series)
}

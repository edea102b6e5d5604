//! The `event.completed` payload of a finished run, from the same [`Summary`] its stored
//! `Aggregated` summary point is written from, so a notification shows the stored numbers.

use protocol::{CompletedPayload, NodeVerdict, Percentiles, RunInfo};

use crate::effects::FinalStatus;
use crate::measurements::Summary;

/// How a run ended, and what it measured.
#[derive(Debug)]
pub(crate) struct Outcome<'a> {
    pub(crate) info: &'a RunInfo,
    pub(crate) status: FinalStatus,
    pub(crate) duration_s: f64,
    pub(crate) nodes: u32,
    /// The figures of all requests; `None` when no node sent stats.
    pub(crate) aggregated: Option<&'a Summary>,
    /// Every node's threshold verdicts.
    pub(crate) thresholds: Vec<NodeVerdict>,
}

/// The payload published on `event.completed`.
pub(crate) fn payload(o: Outcome<'_>) -> CompletedPayload {
    let (requests, failures) = o.aggregated.map_or((0, 0), |s| (s.requests, s.failures));
    let percentiles = o.aggregated.and_then(|s| {
        Some(Percentiles {
            p50: s.percentile("response_time_p50")?,
            p95: s.percentile("response_time_p95")?,
            p99: s.percentile("response_time_p99")?,
        })
    });
    CompletedPayload {
        status: o.status.as_str().to_string(),
        duration_s: o.duration_s,
        requests,
        failures,
        nodes: o.nodes,
        target_host: Some(o.info.target_host.clone()),
        tool: Some(o.info.tool.clone()),
        started_at: Some(o.info.started_at),
        users: Some(o.info.clients),
        rps: o.aggregated.and_then(|s| s.rates).map(|(rps, _)| rps),
        failure_pct: (requests > 0).then(|| failures as f64 * 100.0 / requests as f64),
        response_time_ms: percentiles,
        thresholds: o.thresholds,
    }
}

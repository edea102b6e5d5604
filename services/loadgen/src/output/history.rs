//! The run's time series: a [`Recorder`] fed with the cumulative stats every second (from the
//! first second on, as Locust's history) and once at the end makes one [`HistoryPoint`] per
//! interval, with the rates and percentiles of the interval since the previous one
//! (percentiles from the difference of the cumulative HdrHistograms:
//! [`protocol::StatsEntry::interval_percentile`], the function the writer's snapshots use).

use std::time::Duration;

use protocol::StatsPayload;
use serde::Serialize;

use super::percentiles::PERCENTILES;
use super::summary::avg_content;

/// One point of the run's time series (the aggregated totals).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HistoryPoint {
    /// When it was taken, Unix seconds.
    pub(crate) timestamp: f64,
    /// Time since the users started, s.
    pub(crate) elapsed_s: f64,
    /// Users running.
    pub(crate) user_count: u64,
    /// Cumulative requests.
    pub(crate) requests: u64,
    /// Cumulative failures.
    pub(crate) failures: u64,
    /// Requests per second over the interval since the previous point.
    pub(crate) rps: f64,
    /// Failures per second over the interval.
    pub(crate) fail_per_s: f64,
    /// Response-time percentiles of the interval's requests, ms, in the order of
    /// [`PERCENTILES`]; `None` when the interval had no requests.
    pub(crate) percentiles: Vec<Option<f64>>,
    /// Cumulative median response time, ms.
    pub(crate) total_median_ms: f64,
    /// Cumulative average response time, ms.
    pub(crate) total_avg_ms: f64,
    /// Cumulative fastest response, ms.
    pub(crate) total_min_ms: f64,
    /// Cumulative slowest response, ms.
    pub(crate) total_max_ms: f64,
    /// Cumulative average response size, bytes.
    pub(crate) total_avg_content_length: f64,
}

/// Builds the time series from cumulative snapshots.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    points: Vec<HistoryPoint>,
    previous: Option<(f64, StatsPayload)>,
}

impl Recorder {
    /// Records the cumulative stats `p`, taken `elapsed` after the users started, at Unix time
    /// `now` (s).
    pub(crate) fn record(&mut self, now: f64, elapsed: Duration, p: &StatsPayload) {
        let elapsed_s = elapsed.as_secs_f64();
        let (prev_elapsed, prev) = match &self.previous {
            Some((t, q)) => (*t, Some(&q.total)),
            None => (0.0, None),
        };
        let dt = (elapsed_s - prev_elapsed).max(0.001);
        let t = &p.total;
        let (r0, f0) = prev.map_or((0, 0), |q| (q.num_requests, q.num_failures));
        let percentiles = PERCENTILES
            .iter()
            .map(|&q| t.interval_percentile(prev, q))
            .collect();
        self.points.push(HistoryPoint {
            timestamp: now,
            elapsed_s,
            user_count: p.user_count,
            requests: t.num_requests,
            failures: t.num_failures,
            rps: t.num_requests.saturating_sub(r0) as f64 / dt,
            fail_per_s: t.num_failures.saturating_sub(f0) as f64 / dt,
            percentiles,
            total_median_ms: t.percentile(0.5),
            total_avg_ms: t.avg_response_time(),
            total_min_ms: t.min_response_time.unwrap_or(0.0),
            total_max_ms: t.max_response_time,
            total_avg_content_length: avg_content(t),
        });
        self.previous = Some((elapsed_s, p.clone()));
    }

    /// The points so far.
    pub(crate) fn points(&self) -> &[HistoryPoint] {
        &self.points
    }
}

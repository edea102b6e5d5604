//! Result files: `--json FILE`, `--csv PREFIX` (Locust's CSV files and columns, written by `csv`)
//! and `--html FILE` (a self-contained page with charts of requests/s, users and response-time
//! percentiles over time, written by `html`), all made of one [`Report`]. The time series comes
//! from `history`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use protocol::{StatsEntry, StatsPayload};
use serde::Serialize;

use super::history::HistoryPoint;
use super::percentiles::{percentile_label, Percentiles, Scope, PERCENTILES};
use super::summary::{avg_content, rps};
use super::thresholds::Verdict;

/// What the report says about the run besides its stats.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RunMeta {
    /// `loadgen`.
    pub(crate) tool: String,
    /// `closed` (users) or `open` (arrival rate).
    pub(crate) model: String,
    /// The system under test.
    pub(crate) target_host: String,
    /// When the run started, RFC 3339.
    pub(crate) started_at: String,
    /// The load window (first user started → load stopped), s: requests/s are requests ÷ this.
    pub(crate) elapsed_s: f64,
    /// Users (closed model) or connections (open model).
    pub(crate) users: u64,
    /// Users started per second (closed model).
    pub(crate) spawn_rate: f64,
    /// Requests started per second (open model).
    pub(crate) arrival_rate: Option<f64>,
    /// The run's uuid, when it was registered.
    pub(crate) uuid: Option<String>,
    /// This node's id.
    pub(crate) node_id: String,
}

/// Everything the report files are made of.
pub(crate) struct Report<'a> {
    /// Run metadata.
    pub(crate) meta: &'a RunMeta,
    /// Final cumulative stats.
    pub(crate) stats: &'a StatsPayload,
    /// Time series.
    pub(crate) history: &'a [HistoryPoint],
    /// Threshold verdicts.
    pub(crate) thresholds: &'a [Verdict],
    /// Where percentiles come from.
    pub(crate) percentiles: &'a dyn Percentiles,
}

impl Report<'_> {
    fn percentile_map(&self, e: &StatsEntry, total: bool) -> BTreeMap<String, f64> {
        PERCENTILES
            .iter()
            .map(|&q| {
                (
                    percentile_label(q),
                    self.percentiles.percentile(e, Scope::row(total), q),
                )
            })
            .collect()
    }

    /// The `--json` document.
    pub(crate) fn json(&self) -> serde_json::Value {
        let per_entry: Vec<serde_json::Value> = self
            .stats
            .entries
            .iter()
            .map(|e| self.entry_json(e, false))
            .collect();
        serde_json::json!({
            "schema": "loadgen.report.v1",
            "run": self.meta,
            "entries": per_entry,
            "total": self.entry_json(&self.stats.total, true),
            "errors": self.stats.errors,
            "thresholds": self.thresholds,
            "history": self.history,
            "percentileLabels": PERCENTILES.iter().map(|&q| percentile_label(q)).collect::<Vec<_>>(),
        })
    }

    fn entry_json(&self, e: &StatsEntry, total: bool) -> serde_json::Value {
        serde_json::json!({
            "method": e.method,
            "name": e.name,
            "requests": e.num_requests,
            "failures": e.num_failures,
            "avgMs": e.avg_response_time(),
            "minMs": e.min_response_time.unwrap_or(0.0),
            "maxMs": e.max_response_time,
            "avgContentLength": avg_content(e),
            "rps": rps(e.num_requests, self.stats),
            "failPerS": rps(e.num_failures, self.stats),
            "percentilesMs": self.percentile_map(e, total),
            "percentileSource": e.percentile_source().as_str(),
            "locust": e,
        })
    }
}

/// Writes `text` to `path`, naming the file in the error.
pub(crate) fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// A response time in the CSV and HTML files: ms to the µs, as stored (`105.023`, `132`), so
/// the files show the very numbers InfluxDB gets.
pub(crate) fn fmt_ms(v: f64) -> String {
    format!("{}", protocol::stats::round_to_us(v))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::output::history::Recorder;
    use crate::output::percentiles::Recorded;

    fn payload(n: u32, at: f64) -> StatsPayload {
        let mut a = StatsEntry::new("GET", "/a,\"b\"", 100.0);
        for i in 0..n {
            a.log(f64::from(i % 20 + 1), 10, i % 10 == 0, at);
        }
        let errors = vec![protocol::ErrorEntry {
            method: "GET".into(),
            name: "/a,\"b\"".into(),
            error: "HTTP 500".into(),
            occurrences: u64::from(n.div_ceil(10)),
        }];
        StatsPayload::from_entries(vec![a], errors, 2, "running")
    }

    fn meta() -> RunMeta {
        RunMeta {
            tool: "loadgen".into(),
            model: "closed".into(),
            target_host: "http://t".into(),
            started_at: "2026-11-29T08:00:00Z".into(),
            elapsed_s: 4.0,
            users: 2,
            spawn_rate: 1.0,
            arrival_rate: None,
            uuid: None,
            node_id: "n".into(),
        }
    }

    #[test]
    fn history_rates_and_interval_percentiles() {
        let mut r = Recorder::default();
        r.record(102.0, Duration::from_secs(2), &payload(100, 102.0));
        r.record(104.0, Duration::from_secs(4), &payload(300, 104.0));
        let h = r.points();
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].rps, 50.0);
        assert_eq!(h[1].rps, 100.0);
        assert_eq!(h[1].requests, 300);
        assert_eq!(h[1].fail_per_s, 10.0);
        assert_eq!(h[1].percentiles.len(), PERCENTILES.len());
        assert_eq!(h[1].percentiles[10], Some(20.0));
    }

    #[test]
    fn csv_files_have_locusts_columns() {
        let mut r = Recorder::default();
        r.record(102.0, Duration::from_secs(2), &payload(100, 102.0));
        let stats = payload(100, 102.0);
        let m = meta();
        let rep = Report {
            meta: &m,
            stats: &stats,
            history: r.points(),
            thresholds: &[],
            percentiles: &Recorded,
        };
        let csv = rep.stats_csv();
        let mut lines = csv.lines();
        assert_eq!(
            lines.next(),
            Some("Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%")
        );
        let row = lines.next().expect("row");
        assert!(row.starts_with("GET,\"/a,\"\"b\"\"\",100,10,"), "{row}");
        assert!(lines
            .next()
            .expect("total")
            .starts_with(",Aggregated,100,10,"));
        let hist = rep.history_csv();
        assert!(hist.starts_with("Timestamp,User Count,Type,Name,Requests/s,Failures/s,50%,"));
        assert!(hist.lines().next().expect("h").ends_with(",100%,Total Request Count,Total Failure Count,Total Median Response Time,Total Average Response Time,Total Min Response Time,Total Max Response Time,Total Average Content Size"));
        assert!(hist
            .lines()
            .nth(1)
            .expect("row")
            .starts_with("102,2,,Aggregated,50.000000,"));
        assert_eq!(
            rep.failures_csv(),
            "Method,Name,Error,Occurrences\nGET,\"/a,\"\"b\"\"\",HTTP 500,10\n"
        );
        assert_eq!(rep.exceptions_csv(), "Count,Message,Traceback,Nodes\n");
    }

    #[test]
    fn html_is_self_contained_and_escaped() {
        let mut r = Recorder::default();
        r.record(102.0, Duration::from_secs(2), &payload(100, 102.0));
        let mut stats = payload(100, 102.0);
        stats.entries[0].name = "</script><b>x".into();
        let m = meta();
        let rep = Report {
            meta: &m,
            stats: &stats,
            history: r.points(),
            thresholds: &[],
            percentiles: &Recorded,
        };
        let html = rep.html();
        assert!(!html.contains("http://cdn") && !html.contains("src=\"http"));
        assert!(html.contains("&lt;/script&gt;&lt;b&gt;x"));
        assert_eq!(
            html.matches("</script>").count(),
            2,
            "only the page's own scripts close"
        );
        assert!(html.contains("data-charts-drawn=\"0\""));
        let json = rep.json();
        assert_eq!(json["total"]["requests"], 100);
        assert_eq!(json["total"]["percentilesMs"]["100%"], 20.0);
        assert_eq!(json["run"]["model"], "closed");
        assert_eq!(json["history"][0]["rps"], 50.0);
    }
}

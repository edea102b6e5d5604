//! Result files: `--json FILE`, `--csv PREFIX` (Locust's CSV files and columns) and
//! `--html FILE` (a self-contained page with charts of requests/s, users and response-time
//! percentiles over time, drawn by inline JavaScript on `<canvas>`; no external resources).
//!
//! The time series come from a [`Recorder`] fed with the cumulative stats at every stats
//! interval; each [`HistoryPoint`] carries the rates and percentiles of the interval since the
//! previous one (percentiles from the difference of the cumulative histograms).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use protocol::stats::histogram_percentile;
use protocol::{StatsEntry, StatsPayload};
use serde::Serialize;

use crate::summary::{rps, PERCENTILES};
use crate::thresholds::Verdict;

/// One point of the run's time series (the aggregated totals).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryPoint {
    /// When it was taken, Unix seconds.
    pub timestamp: f64,
    /// Time since the users started, s.
    pub elapsed_s: f64,
    /// Users running.
    pub user_count: u64,
    /// Cumulative requests.
    pub requests: u64,
    /// Cumulative failures.
    pub failures: u64,
    /// Requests per second over the interval since the previous point.
    pub rps: f64,
    /// Failures per second over the interval.
    pub fail_per_s: f64,
    /// Response-time percentiles of the interval's requests, ms, in the order of
    /// [`PERCENTILES`]; `None` when the interval had no requests.
    pub percentiles: Vec<Option<f64>>,
    /// Cumulative median response time, ms.
    pub total_median_ms: f64,
    /// Cumulative average response time, ms.
    pub total_avg_ms: f64,
    /// Cumulative fastest response, ms.
    pub total_min_ms: f64,
    /// Cumulative slowest response, ms.
    pub total_max_ms: f64,
    /// Cumulative average response size, bytes.
    pub total_avg_content_length: f64,
}

/// Builds the time series from cumulative snapshots.
#[derive(Debug, Default)]
pub struct Recorder {
    points: Vec<HistoryPoint>,
    previous: Option<(f64, StatsPayload)>,
}

impl Recorder {
    /// Records the cumulative stats `p`, taken `elapsed` after the users started, at Unix time
    /// `now` (s).
    pub fn record(&mut self, now: f64, elapsed: Duration, p: &StatsPayload) {
        let elapsed_s = elapsed.as_secs_f64();
        let (prev_elapsed, prev) = match &self.previous {
            Some((t, q)) => (*t, Some(&q.total)),
            None => (0.0, None),
        };
        let dt = (elapsed_s - prev_elapsed).max(0.001);
        let t = &p.total;
        let (r0, f0) = prev.map_or((0, 0), |q| (q.num_requests, q.num_failures));
        let mut interval: BTreeMap<u64, u64> = t.response_times.clone();
        if let Some(q) = prev {
            for (bucket, n) in &q.response_times {
                if let Some(slot) = interval.get_mut(bucket) {
                    *slot = slot.saturating_sub(*n);
                }
            }
            interval.retain(|_, n| *n > 0);
        }
        let percentiles = PERCENTILES
            .iter()
            .map(|&q| (!interval.is_empty()).then(|| histogram_percentile(&interval, q) as f64))
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

    /// The cumulative stats of the last point, if any.
    pub fn previous(&self) -> Option<&StatsPayload> {
        self.previous.as_ref().map(|(_, p)| p)
    }

    /// The points so far.
    pub fn points(&self) -> &[HistoryPoint] {
        &self.points
    }
}

fn avg_content(e: &StatsEntry) -> f64 {
    if e.num_requests == 0 {
        0.0
    } else {
        e.total_content_length as f64 / e.num_requests as f64
    }
}

/// What the report says about the run besides its stats.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunMeta {
    /// `loadgen`.
    pub tool: String,
    /// `closed` (users) or `open` (arrival rate).
    pub model: String,
    /// The system under test.
    pub target_host: String,
    /// When the run started, RFC 3339.
    pub started_at: String,
    /// Run time, s.
    pub elapsed_s: f64,
    /// Users (closed model) or connections (open model).
    pub users: u64,
    /// Users started per second (closed model).
    pub spawn_rate: f64,
    /// Requests started per second (open model).
    pub arrival_rate: Option<f64>,
    /// The run's uuid, when it was registered.
    pub uuid: Option<String>,
    /// This node's id.
    pub node_id: String,
}

/// A percentile source: `((method, name) or None for Aggregated, fraction) → ms`. Used to take
/// percentiles from HdrHistograms when there are some; `None` falls back to the Locust
/// histogram of the entry.
pub type PercentileFn<'a> = &'a dyn Fn(Option<(&str, &str)>, f64) -> Option<f64>;

/// The `q` percentile of `e` (the `Aggregated` row when `total`), ms, from `pf` when it knows
/// the entry, else from the entry's Locust histogram.
pub fn entry_percentile(e: &StatsEntry, total: bool, q: f64, pf: Option<PercentileFn<'_>>) -> f64 {
    let key = (!total).then_some((e.method.as_str(), e.name.as_str()));
    pf.and_then(|f| f(key, q))
        .unwrap_or_else(|| e.percentile(q))
}

/// Everything the report files are made of.
pub struct Report<'a> {
    /// Run metadata.
    pub meta: &'a RunMeta,
    /// Final cumulative stats.
    pub stats: &'a StatsPayload,
    /// Time series.
    pub history: &'a [HistoryPoint],
    /// Threshold verdicts.
    pub thresholds: &'a [Verdict],
    /// Where percentiles come from (see [`PercentileFn`]).
    pub percentiles: Option<PercentileFn<'a>>,
}

impl Report<'_> {
    fn percentile_map(&self, e: &StatsEntry, total: bool) -> BTreeMap<String, f64> {
        PERCENTILES
            .iter()
            .map(|&q| {
                (
                    crate::summary::percentile_label(q),
                    entry_percentile(e, total, q, self.percentiles),
                )
            })
            .collect()
    }

    /// The `--json` document.
    pub fn json(&self) -> serde_json::Value {
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
            "percentileLabels": PERCENTILES.iter().map(|&q| crate::summary::percentile_label(q)).collect::<Vec<_>>(),
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
            "rps": rps(e.num_requests, &self.stats.total),
            "failPerS": rps(e.num_failures, &self.stats.total),
            "percentilesMs": self.percentile_map(e, total),
            "locust": e,
        })
    }

    /// Locust's `_stats.csv`.
    pub fn stats_csv(&self) -> String {
        let mut out = String::new();
        let mut header: Vec<String> = [
            "Type",
            "Name",
            "Request Count",
            "Failure Count",
            "Median Response Time",
            "Average Response Time",
            "Min Response Time",
            "Max Response Time",
            "Average Content Size",
            "Requests/s",
            "Failures/s",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        header.extend(
            PERCENTILES
                .iter()
                .map(|&q| crate::summary::percentile_label(q)),
        );
        csv_row(&mut out, &header);
        let rows = self
            .stats
            .entries
            .iter()
            .map(|e| (e, false))
            .chain(std::iter::once((&self.stats.total, true)));
        for (e, total) in rows {
            let mut row = vec![
                e.method.clone(),
                e.name.clone(),
                e.num_requests.to_string(),
                e.num_failures.to_string(),
                fmt_ms(entry_percentile(e, total, 0.5, self.percentiles)),
                e.avg_response_time().to_string(),
                fmt_ms(e.min_response_time.unwrap_or(0.0)),
                fmt_ms(e.max_response_time),
                avg_content(e).to_string(),
                rps(e.num_requests, &self.stats.total).to_string(),
                rps(e.num_failures, &self.stats.total).to_string(),
            ];
            for &q in &PERCENTILES {
                row.push(if e.num_requests == 0 {
                    "N/A".into()
                } else {
                    fmt_ms(entry_percentile(e, total, q, self.percentiles))
                });
            }
            csv_row(&mut out, &row);
        }
        out
    }

    /// Locust's `_stats_history.csv` (the aggregated row of every point).
    pub fn history_csv(&self) -> String {
        let mut out = String::new();
        let mut header: Vec<String> = [
            "Timestamp",
            "User Count",
            "Type",
            "Name",
            "Requests/s",
            "Failures/s",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        header.extend(
            PERCENTILES
                .iter()
                .map(|&q| crate::summary::percentile_label(q)),
        );
        header.extend(
            [
                "Total Request Count",
                "Total Failure Count",
                "Total Median Response Time",
                "Total Average Response Time",
                "Total Min Response Time",
                "Total Max Response Time",
                "Total Average Content Size",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        csv_row(&mut out, &header);
        for h in self.history {
            let mut row = vec![
                format!("{}", h.timestamp as i64),
                h.user_count.to_string(),
                String::new(),
                protocol::AGGREGATED.to_string(),
                format!("{:.6}", h.rps),
                format!("{:.6}", h.fail_per_s),
            ];
            row.extend(
                h.percentiles
                    .iter()
                    .map(|p| p.map_or_else(|| "N/A".to_string(), fmt_ms)),
            );
            row.extend([
                h.requests.to_string(),
                h.failures.to_string(),
                fmt_ms(h.total_median_ms),
                h.total_avg_ms.to_string(),
                fmt_ms(h.total_min_ms),
                fmt_ms(h.total_max_ms),
                h.total_avg_content_length.to_string(),
            ]);
            csv_row(&mut out, &row);
        }
        out
    }

    /// Locust's `_failures.csv`.
    pub fn failures_csv(&self) -> String {
        let mut out = String::new();
        csv_row(
            &mut out,
            &["Method", "Name", "Error", "Occurrences"].map(String::from),
        );
        for e in &self.stats.errors {
            csv_row(
                &mut out,
                &[
                    e.method.clone(),
                    e.name.clone(),
                    e.error.clone(),
                    e.occurrences.to_string(),
                ],
            );
        }
        out
    }

    /// Locust's `_exceptions.csv` (loadgen runs no user code, so it has only the header).
    pub fn exceptions_csv(&self) -> String {
        let mut out = String::new();
        csv_row(
            &mut out,
            &["Count", "Message", "Traceback", "Nodes"].map(String::from),
        );
        out
    }

    /// Writes `PREFIX_stats.csv`, `PREFIX_stats_history.csv`, `PREFIX_failures.csv` and
    /// `PREFIX_exceptions.csv`; returns the paths written.
    pub fn write_csv(&self, prefix: &Path) -> anyhow::Result<Vec<PathBuf>> {
        let mut written = Vec::new();
        for (suffix, text) in [
            ("_stats.csv", self.stats_csv()),
            ("_stats_history.csv", self.history_csv()),
            ("_failures.csv", self.failures_csv()),
            ("_exceptions.csv", self.exceptions_csv()),
        ] {
            let mut name = prefix.as_os_str().to_owned();
            name.push(suffix);
            let path = PathBuf::from(name);
            std::fs::write(&path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            written.push(path);
        }
        Ok(written)
    }

    /// The `--html` page: tables rendered here, charts drawn in the browser from the embedded
    /// JSON. After drawing, the page checks that each canvas has painted pixels and writes the
    /// count into `data-charts-drawn` on `<body>` (and `#charts-status`).
    pub fn html(&self) -> String {
        let data = self.json().to_string().replace("</", "<\\/");
        let m = self.meta;
        let mut tables = String::new();
        let _ = write!(
            tables,
            "<table><thead><tr><th>Type</th><th>Name</th><th># reqs</th><th># fails</th><th>Avg (ms)</th><th>Min (ms)</th><th>Max (ms)</th><th>Avg size (bytes)</th><th>req/s</th><th>failures/s</th></tr></thead><tbody>"
        );
        let rows: Vec<(&StatsEntry, bool)> = self
            .stats
            .entries
            .iter()
            .map(|e| (e, false))
            .chain(std::iter::once((&self.stats.total, true)))
            .collect();
        for (e, total) in &rows {
            let _ = write!(
                tables,
                "<tr{}><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.0}</td><td>{:.0}</td><td>{:.0}</td><td>{:.2}</td><td>{:.2}</td></tr>",
                if *total { " class=\"total\"" } else { "" },
                esc(&e.method),
                esc(&e.name),
                e.num_requests,
                e.num_failures,
                e.avg_response_time(),
                e.min_response_time.unwrap_or(0.0),
                e.max_response_time,
                avg_content(e),
                rps(e.num_requests, &self.stats.total),
                rps(e.num_failures, &self.stats.total),
            );
        }
        tables.push_str("</tbody></table>\n<h2>Response time percentiles (ms)</h2>\n<table><thead><tr><th>Type</th><th>Name</th>");
        for &q in &PERCENTILES {
            let _ = write!(tables, "<th>{}</th>", crate::summary::percentile_label(q));
        }
        tables.push_str("<th># reqs</th></tr></thead><tbody>");
        for (e, total) in &rows {
            let _ = write!(
                tables,
                "<tr{}><td>{}</td><td>{}</td>",
                if *total { " class=\"total\"" } else { "" },
                esc(&e.method),
                esc(&e.name)
            );
            for &q in &PERCENTILES {
                if e.num_requests == 0 {
                    tables.push_str("<td>N/A</td>");
                } else {
                    let _ = write!(
                        tables,
                        "<td>{}</td>",
                        fmt_ms(entry_percentile(e, *total, q, self.percentiles))
                    );
                }
            }
            let _ = write!(tables, "<td>{}</td></tr>", e.num_requests);
        }
        tables.push_str("</tbody></table>\n");
        if !self.stats.errors.is_empty() {
            tables.push_str("<h2>Errors</h2>\n<table><thead><tr><th># occurrences</th><th>Method</th><th>Name</th><th>Error</th></tr></thead><tbody>");
            for e in &self.stats.errors {
                let _ = write!(
                    tables,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    e.occurrences,
                    esc(&e.method),
                    esc(&e.name),
                    esc(&e.error)
                );
            }
            tables.push_str("</tbody></table>\n");
        }
        if !self.thresholds.is_empty() {
            tables.push_str("<h2>Thresholds</h2>\n<ul>");
            for v in self.thresholds {
                let _ = write!(
                    tables,
                    "<li class=\"{}\">{}</li>",
                    if v.passed { "pass" } else { "fail" },
                    esc(&v.to_string())
                );
            }
            tables.push_str("</ul>\n");
        }
        let title = format!("loadgen report: {}", m.target_host);
        let arrival = m
            .arrival_rate
            .map(|r| format!(", arrival rate {r}/s"))
            .unwrap_or_default();
        HTML_TEMPLATE
            .replace("{{TITLE}}", &esc(&title))
            .replace(
                "{{META}}",
                &esc(&format!(
                    "{} model, {} users (spawn rate {}/s){arrival}, started {}, ran {:.1} s, node {}{}",
                    m.model,
                    m.users,
                    m.spawn_rate,
                    m.started_at,
                    m.elapsed_s,
                    m.node_id,
                    m.uuid
                        .as_deref()
                        .map(|u| format!(", run {u}"))
                        .unwrap_or_default()
                )),
            )
            .replace("{{TABLES}}", &tables)
            .replace("{{DATA}}", &data)
    }
}

/// Writes `text` to `path`, naming the file in the error.
pub fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// A response time as Locust's CSV shows it: whole ms when integral, else two decimals.
fn fmt_ms(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// Appends one CSV record (RFC 4180: fields with `,`, `"` or line breaks are quoted, quotes
/// doubled; `\n` line ends, as Python's csv module writes with `lineterminator="\n"`).
fn csv_row(out: &mut String, fields: &[String]) {
    let cells: Vec<String> = fields
        .iter()
        .map(|f| {
            if f.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", f.replace('"', "\"\""))
            } else {
                f.clone()
            }
        })
        .collect();
    out.push_str(&cells.join(","));
    out.push('\n');
}

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

const HTML_TEMPLATE: &str = r##"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{TITLE}}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }
h1 { font-size: 1.4rem; margin-bottom: .2rem; }
.meta { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: .5rem 0 1.5rem; font-size: .85rem; }
th, td { border: 1px solid #ccc; padding: .25rem .5rem; text-align: right; }
th:nth-child(2), td:nth-child(2) { text-align: left; }
tr.total { font-weight: bold; background: #f4f4f4; }
.charts { display: flex; flex-wrap: wrap; gap: 1rem; }
.chart { border: 1px solid #ddd; padding: .5rem; }
.chart h3 { margin: 0 0 .3rem; font-size: .95rem; }
li.fail { color: #b00020; font-weight: bold; }
li.pass { color: #1b5e20; }
</style>
</head>
<body data-charts-drawn="0">
<h1>{{TITLE}}</h1>
<p class="meta">{{META}}</p>
<h2>Over time</h2>
<div class="charts">
<div class="chart"><h3>Requests/s and failures/s</h3><canvas id="chart-rps" width="560" height="260"></canvas></div>
<div class="chart"><h3>Users</h3><canvas id="chart-users" width="560" height="260"></canvas></div>
<div class="chart"><h3>Response time percentiles (ms, per interval)</h3><canvas id="chart-percentiles" width="560" height="260"></canvas></div>
</div>
<p id="charts-status">charts not drawn (JavaScript disabled?)</p>
<h2>Request statistics</h2>
{{TABLES}}
<script type="application/json" id="report-data">{{DATA}}</script>
<script>
(function () {
  "use strict";
  var report = JSON.parse(document.getElementById("report-data").textContent);
  var h = report.history || [];
  var labels = report.percentileLabels || [];
  function col(label) { return labels.indexOf(label); }
  function series(f) { return h.map(function (p) { return [p.elapsedS, f(p)]; }); }
  function pct(label) {
    var i = col(label);
    return series(function (p) { return p.percentiles[i] == null ? null : p.percentiles[i]; });
  }
  function niceMax(v) {
    if (!(v > 0)) { return 1; }
    var e = Math.pow(10, Math.floor(Math.log10(v)));
    var m = v / e;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * e;
  }
  function draw(id, lines) {
    var c = document.getElementById(id);
    var ctx = c.getContext("2d");
    var W = c.width, H = c.height, L = 56, R = 12, T = 12, B = 34;
    ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, W, H);
    var xmax = 0, ymax = 0;
    lines.forEach(function (l) { l.points.forEach(function (p) {
      if (p[0] > xmax) { xmax = p[0]; }
      if (p[1] != null && p[1] > ymax) { ymax = p[1]; }
    }); });
    xmax = xmax > 0 ? xmax : 1; ymax = niceMax(ymax);
    function X(x) { return L + (W - L - R) * x / xmax; }
    function Y(y) { return H - B - (H - T - B) * y / ymax; }
    ctx.strokeStyle = "#999"; ctx.lineWidth = 1; ctx.font = "11px sans-serif"; ctx.fillStyle = "#444";
    ctx.beginPath(); ctx.moveTo(L, T); ctx.lineTo(L, H - B); ctx.lineTo(W - R, H - B); ctx.stroke();
    for (var i = 0; i <= 4; i++) {
      var yv = ymax * i / 4, yy = Y(yv);
      ctx.fillText(String(Math.round(yv * 100) / 100), 4, yy + 4);
      ctx.strokeStyle = "#eee"; ctx.beginPath(); ctx.moveTo(L, yy); ctx.lineTo(W - R, yy); ctx.stroke();
      var xv = xmax * i / 4;
      ctx.fillText((xmax < 20 ? Math.round(xv * 10) / 10 : Math.round(xv)) + " s", X(xv) - 8, H - B + 16);
    }
    var painted = 0;
    lines.forEach(function (l, k) {
      ctx.strokeStyle = l.color; ctx.lineWidth = 2; ctx.beginPath();
      var started = false;
      l.points.forEach(function (p) {
        if (p[1] == null) { started = false; return; }
        if (!started) { ctx.moveTo(X(p[0]), Y(p[1])); started = true; } else { ctx.lineTo(X(p[0]), Y(p[1])); }
        ctx.fillStyle = l.color; ctx.fillRect(X(p[0]) - 2, Y(p[1]) - 2, 4, 4);
        painted++;
      });
      ctx.stroke();
      ctx.fillStyle = l.color; ctx.fillRect(L + 8 + k * 90, H - 14, 10, 10);
      ctx.fillStyle = "#222"; ctx.fillText(l.label, L + 22 + k * 90, H - 5);
    });
    if (painted === 0) { return false; }
    // Count the pixels the lines painted (not white, not the grey axes).
    var img = ctx.getImageData(L + 1, T, W - L - R - 1, H - T - B - 1).data, coloured = 0;
    for (var j = 0; j < img.length; j += 4) {
      var r = img[j], g = img[j + 1], b = img[j + 2];
      if (Math.max(r, g, b) - Math.min(r, g, b) > 60) { coloured++; }
    }
    return coloured > 0;
  }
  var drawn = 0;
  try {
    if (draw("chart-rps", [
      { label: "req/s", color: "#1565c0", points: series(function (p) { return p.rps; }) },
      { label: "failures/s", color: "#c62828", points: series(function (p) { return p.failPerS; }) }
    ])) { drawn++; }
    if (draw("chart-users", [
      { label: "users", color: "#2e7d32", points: series(function (p) { return p.userCount; }) }
    ])) { drawn++; }
    if (draw("chart-percentiles", [
      { label: "p50", color: "#1565c0", points: pct("50%") },
      { label: "p95", color: "#ef6c00", points: pct("95%") },
      { label: "p99", color: "#c62828", points: pct("99%") }
    ])) { drawn++; }
  } catch (e) {
    document.getElementById("charts-status").textContent = "chart error: " + e;
  }
  document.body.setAttribute("data-charts-drawn", String(drawn));
  if (drawn > 0 || h.length > 0) {
    document.getElementById("charts-status").textContent = "charts drawn: " + drawn + " of 3 (" + h.length + " points)";
  }
})();
</script>
</body>
</html>
"##;

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(r.previous().map(|p| p.total.num_requests), Some(300));
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
            percentiles: None,
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
            percentiles: None,
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

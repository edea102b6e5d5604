//! `--html FILE`: a self-contained page. The page itself is `report.html` (included at build
//! time); the tables are rendered here, and the charts are drawn in the browser by the page's
//! own JavaScript from the report's JSON, injected into the page as data.

use std::fmt::Write as _;

use protocol::StatsEntry;

use super::percentiles::{percentile_label, Scope, PERCENTILES};
use super::report::{fmt_ms, Report};
use super::summary::{avg_content, rps};

/// The page, with `{{TITLE}}`, `{{META}}`, `{{TABLES}}` and `{{DATA}}` (the JSON report) to fill.
const TEMPLATE: &str = include_str!("report.html");

impl Report<'_> {
    /// The `--html` page: tables rendered here, charts drawn in the browser from the embedded
    /// JSON. After drawing, the page checks that each canvas has painted pixels and writes the
    /// count into `data-charts-drawn` and the points per chart into `data-chart-points` on
    /// `<body>`, for tests: attributes, not text a user sees.
    #[allow(clippy::too_many_lines)] // TODO(issue 22): split into phases
    pub(crate) fn html(&self) -> String {
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
                rps(e.num_requests, self.stats),
                rps(e.num_failures, self.stats),
            );
        }
        tables.push_str("</tbody></table>\n<h2>Response time percentiles (ms)</h2>\n<table><thead><tr><th>Type</th><th>Name</th>");
        for &q in &PERCENTILES {
            let _ = write!(tables, "<th>{}</th>", percentile_label(q));
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
                        fmt_ms(self.percentiles.percentile(e, Scope::row(*total), q))
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
        TEMPLATE
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

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

//! `--csv PREFIX`: Locust's CSV files, with Locust's column names.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::percentiles::{percentile_label, Scope, PERCENTILES};
use super::report::{fmt_ms, Report};
use super::summary::{avg_content, rps};

impl Report<'_> {
    /// Locust's `_stats.csv`.
    pub(crate) fn stats_csv(&self) -> String {
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
        header.extend(PERCENTILES.iter().map(|&q| percentile_label(q)));
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
                fmt_ms(self.percentiles.percentile(e, Scope::row(total), 0.5)),
                e.avg_response_time().to_string(),
                fmt_ms(e.min_response_time.unwrap_or(0.0)),
                fmt_ms(e.max_response_time),
                avg_content(e).to_string(),
                rps(e.num_requests, self.stats).to_string(),
                rps(e.num_failures, self.stats).to_string(),
            ];
            for &q in &PERCENTILES {
                row.push(if e.num_requests == 0 {
                    "N/A".into()
                } else {
                    fmt_ms(self.percentiles.percentile(e, Scope::row(total), q))
                });
            }
            csv_row(&mut out, &row);
        }
        out
    }

    /// Locust's `_stats_history.csv` (the aggregated row of every point).
    pub(crate) fn history_csv(&self) -> String {
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
        header.extend(PERCENTILES.iter().map(|&q| percentile_label(q)));
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
    pub(crate) fn failures_csv(&self) -> String {
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
    pub(crate) fn exceptions_csv(&self) -> String {
        let mut out = String::new();
        csv_row(
            &mut out,
            &["Count", "Message", "Traceback", "Nodes"].map(String::from),
        );
        out
    }

    /// Writes `PREFIX_stats.csv`, `PREFIX_stats_history.csv`, `PREFIX_failures.csv` and
    /// `PREFIX_exceptions.csv`; returns the paths written.
    pub(crate) fn write_csv(&self, prefix: &Path) -> anyhow::Result<Vec<PathBuf>> {
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

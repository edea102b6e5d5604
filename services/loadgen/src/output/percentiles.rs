//! Response-time percentiles, behind one small trait: the console's tables, the CSV and JSON
//! files, the HTML page and the thresholds all ask one [`Percentiles`] source, so a number
//! printed and a number written are the same number.
//!
//! The one source is [`Recorded`]: [`StatsEntry::percentile`], the function the writer's stored
//! points use too. It reads the entry's HdrHistogram (µs, 3 significant digits), which loadgen
//! records for every request and merges exactly (across users, methods of one name, and nodes),
//! and falls back to Locust's rounded histogram only for an entry without one.

use protocol::{PercentileSource, StatsEntry};

/// Percentiles of the percentile tables (fractions), as Locust prints them.
pub(crate) const PERCENTILES: [f64; 11] = [
    0.50, 0.66, 0.75, 0.80, 0.90, 0.95, 0.98, 0.99, 0.999, 0.9999, 1.0,
];

/// The column label of a percentile fraction: `50%`, `99.9%`, `100%`.
pub(crate) fn percentile_label(p: f64) -> String {
    let pct = p * 100.0;
    if (pct - pct.round()).abs() < 1e-9 {
        format!("{}%", pct.round() as u64)
    } else {
        // 99.9 and 99.99; trim float noise.
        let s = format!("{pct:.4}");
        format!("{}%", s.trim_end_matches('0').trim_end_matches('.'))
    }
}

/// Which requests a row of stats stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Every request: the `Aggregated` row.
    Total,
    /// The requests of the entry's method and name.
    Endpoint,
    /// The requests of the entry's name, whatever their method (the entry is their merge).
    Name,
}

impl Scope {
    /// The scope of a table row: the total row, or one endpoint.
    pub(crate) fn row(total: bool) -> Self {
        if total {
            Scope::Total
        } else {
            Scope::Endpoint
        }
    }
}

/// Where the response-time percentiles a user sees come from.
pub(crate) trait Percentiles {
    /// The `q` quantile (0–1) of the response times of the requests `e` stands for (see
    /// [`Scope`]), ms.
    fn percentile(&self, e: &StatsEntry, scope: Scope, q: f64) -> f64;

    /// How the console's percentile table is headed for a run whose total is `total`:
    /// `ms, HdrHistogram` or `ms, Locust's rounded histogram`.
    fn heading(&self, total: &StatsEntry) -> &'static str;
}

/// The percentiles the stats themselves carry: [`StatsEntry::percentile`] (the HdrHistogram
/// when the entry has one, else Locust's map). An entry standing for several endpoints (the
/// total, a name's methods) is their merge, whose HdrHistogram is the sum of theirs, so the
/// scope needs no lookup.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Recorded;

impl Percentiles for Recorded {
    fn percentile(&self, e: &StatsEntry, _: Scope, q: f64) -> f64 {
        e.percentile(q)
    }

    fn heading(&self, total: &StatsEntry) -> &'static str {
        match total.percentile_source() {
            PercentileSource::Hdr => "ms, HdrHistogram",
            PercentileSource::Locust => "ms, Locust's rounded histogram",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::stats::{Sample, Stats};

    #[test]
    fn labels() {
        let labels: Vec<String> = PERCENTILES.iter().map(|p| percentile_label(*p)).collect();
        assert_eq!(
            labels,
            ["50%", "66%", "75%", "80%", "90%", "95%", "98%", "99%", "99.9%", "99.99%", "100%"]
        );
    }

    #[test]
    fn percentiles_by_scope_come_from_the_merged_histograms() {
        let stats = Stats::new(1.0);
        let shard = stats.shard();
        for (method, ms) in [("GET", 1.0), ("POST", 100.0)] {
            for _ in 0..10 {
                shard.record(&Sample {
                    method,
                    name: "/x",
                    response_time_ms: ms,
                    content_length: 0,
                    error: None,
                    finished_at: 2.0,
                });
            }
        }
        let p = stats.snapshot(1, "stopped");
        let get = &p.entries[0];
        assert_eq!(get.method, "GET");
        assert_eq!(Recorded.percentile(get, Scope::Endpoint, 1.0), 1.0);
        assert_eq!(Recorded.percentile(&p.total, Scope::Total, 1.0), 100.0);
        // Every method of the name: the merge holds the slow POSTs.
        let mut name = get.clone();
        name.merge(&p.entries[1]);
        assert_eq!(Recorded.percentile(&name, Scope::Name, 0.95), 100.0);
        assert_eq!(Recorded.heading(&p.total), "ms, HdrHistogram");
        // An entry without a histogram (Locust's): its rounded map.
        let mut locust = get.clone();
        locust.hdr_histogram = None;
        assert_eq!(Recorded.heading(&locust), "ms, Locust's rounded histogram");
        assert_eq!(Recorded.percentile(&locust, Scope::Endpoint, 0.5), 1.0);
    }
}
